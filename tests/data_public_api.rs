//! The data layer through the crate's public paths only, as the CLI and FFI use it.

use std::collections::BTreeMap;

use factortopy::data::{
    atomic_write, check_pair, ensure_output_dir, read_npy, read_npy_i64, write_npy, write_tensors,
    Array, Brain, Features, LayerFeatures, OutTensor, TensorFile,
};
use factortopy::Error;

#[test]
fn features_and_brain_files_pair_up() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    ensure_output_dir(&out).unwrap();

    let n = 6;
    let local = Array::new(vec![n, 2, 2, 2], (0..n * 8).map(|i| i as f32 * 0.1).collect()).unwrap();
    let ids: Vec<String> = (0..n).map(|i| format!("nsd{i:05}")).collect();
    let f = Features {
        model: "toy".into(),
        layer_names: vec!["block0".into()],
        stimulus_ids: Some(ids.clone()),
        layers: vec![LayerFeatures { local, global: None }],
    };
    let fp = out.join("features.safetensors");
    f.save(&fp).unwrap();

    let v = 3;
    let responses =
        Array::new(vec![n, v], (0..n * v).map(|i| ((i * 5) % 7) as f32).collect()).unwrap();
    let b = Brain {
        responses: responses.into(),
        coords: Array::zeros(vec![v, 3]),
        roi: vec![0, 1, -1],
        noise_ceiling: None,
        flat: None,
        hemisphere: None,
        roi_names: vec!["V1v".into(), "PPA".into()],
        roi_levels: vec![Brain::default_level("V1v"), Brain::default_level("PPA")],
        stimulus_ids: Some(ids),
        subject: Some("subj01".into()),
    };
    let bp = out.join("brain.safetensors");
    b.save(&bp).unwrap();

    let f2 = Features::load(&fp).unwrap();
    let b2 = Brain::load(&bp).unwrap();
    assert_eq!(b2.roi_levels, vec![0, 4]);
    check_pair(&f2, "features.safetensors", &b2, "brain.safetensors").unwrap();
    assert_eq!(f2.global(0).shape, vec![n, 2]);

    let mut short = b.clone();
    short.responses = Array::zeros(vec![n - 1, v]).into();
    short.stimulus_ids = None;
    let e = check_pair(&f2, "features.safetensors", &short, "brain.safetensors").unwrap_err();
    assert!(matches!(e, Error::Mismatch(_)));
    assert!(e
        .to_string()
        .contains("features.safetensors has 6 images but brain.safetensors has 5"));
}

#[test]
fn raw_tensors_npy_and_atomic_write() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("t.safetensors");
    let data = [1.0f32, 2.0];
    let mut meta = BTreeMap::new();
    meta.insert("k".to_string(), "v".to_string());
    write_tensors(&p, &[("x".to_string(), OutTensor::F32 { shape: vec![2], data: &data })], &meta)
        .unwrap();
    let t = TensorFile::open(&p).unwrap();
    assert_eq!(t.f32("x").unwrap().data, data);
    assert_eq!(t.metadata()["k"], "v");

    let q = dir.path().join("a.npy");
    write_npy(&q, &Array::new(vec![2, 1], vec![3.0, 4.0]).unwrap()).unwrap();
    assert_eq!(read_npy(&q).unwrap().data, vec![3.0, 4.0]);
    assert_eq!(read_npy_i64(&q).unwrap(), (vec![2, 1], vec![3, 4]));

    let r = dir.path().join("plain.txt");
    atomic_write(&r, b"ok").unwrap();
    assert_eq!(std::fs::read(&r).unwrap(), b"ok");
}
