// `factortopy import-algonauts` on a small fabricated directory with the Algonauts 2023 layout
// and file names.

use std::path::{Path, PathBuf};

use factortopy::data::algonauts::{import_algonauts, AlgonautsOptions};
use factortopy::data::{write_npy, Array, Brain};

use crate::common::cli::{bin, stdout_ok};

const N: usize = 12;
const LH: usize = 10;
const RH: usize = 8;
/// fsaverage vertices per hemisphere in the fabricated sphere files.
const F: usize = 20;

/// `.npy` bytes of an i32 vector (the real masks are integer class ids).
fn npy_i32(path: &Path, v: &[i32]) {
    let dict = format!("{{'descr': '<i4', 'fortran_order': False, 'shape': ({},), }}", v.len());
    let mut h = dict.into_bytes();
    while (10 + h.len() + 1) % 64 != 0 {
        h.push(b' ');
    }
    h.push(b'\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    out.extend_from_slice(&h);
    for x in v {
        out.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::write(path, out).unwrap();
}

fn fmri(hemi: usize, v: usize) -> Array {
    let data = (0..N * v).map(|k| ((k * 7 + hemi * 13) % 17) as f32 * 0.1 + (k / v) as f32 * 0.01).collect();
    Array::new(vec![N, v], data).unwrap()
}

/// Fabricates subj07/ and returns its path.
fn fabricate(root: &Path) -> PathBuf {
    let dir = root.join("subj07");
    let fm = dir.join("training_split/training_fmri");
    let masks = dir.join("roi_masks");
    let imgs = dir.join("training_split/training_images");
    for d in [&fm, &masks, &imgs] {
        std::fs::create_dir_all(d).unwrap();
    }
    write_npy(&fm.join("lh_training_fmri.npy"), &fmri(0, LH)).unwrap();
    write_npy(&fm.join("rh_training_fmri.npy"), &fmri(1, RH)).unwrap();
    for i in 0..N {
        std::fs::write(imgs.join(format!("train-{:04}_nsd-{:05}.png", i + 1, 100 + 7 * i)), b"").unwrap();
    }
    // prf-visualrois: 1 V1v, 2 V1d, 3 V2v, 4 V2d, 5 V3v, 6 V3d, 7 hV4.
    npy_i32(&masks.join("lh.prf-visualrois_challenge_space.npy"), &[1, 2, 3, 4, 5, 6, 7, 0, 0, 0]);
    npy_i32(&masks.join("rh.prf-visualrois_challenge_space.npy"), &[2, 1, 4, 0, 7, 0, 0, 0]);
    // floc-faces: 2 = FFA-1 ; floc-places: 2 = PPA (lh vertex 6 is also hV4: overlap).
    npy_i32(&masks.join("lh.floc-faces_challenge_space.npy"), &[0, 0, 0, 0, 0, 0, 0, 2, 0, 0]);
    npy_i32(&masks.join("rh.floc-faces_challenge_space.npy"), &[0, 0, 0, 0, 0, 2, 0, 0]);
    npy_i32(&masks.join("lh.floc-places_challenge_space.npy"), &[0, 0, 0, 0, 0, 0, 2, 0, 2, 0]);
    // Float-typed labels are accepted when whole numbers: floc-bodies 1 = EBA.
    write_npy(&masks.join("rh.floc-bodies_challenge_space.npy"), &Array::new(vec![RH], vec![0., 0., 0., 0., 0., 0., 1., 0.]).unwrap())
        .unwrap();
    // fsaverage masks: challenge vertices are every other fsaverage vertex.
    let lh_mask: Vec<i32> = (0..F).map(|i| i32::from(i % 2 == 0)).collect();
    let rh_mask: Vec<i32> = (0..F).map(|i| i32::from(i % 2 == 1 && i < 2 * RH)).collect();
    npy_i32(&masks.join("lh.all-vertices_fsaverage_space.npy"), &lh_mask);
    npy_i32(&masks.join("rh.all-vertices_fsaverage_space.npy"), &rh_mask);
    // Full fsaverage sphere positions (lh then rh): x = hemisphere, y = vertex index.
    let sphere: Vec<f32> = (0..2 * F).flat_map(|k| [(k / F) as f32 * 200.0 - 100.0, (k % F) as f32, 1.0]).collect();
    write_npy(&root.join("sphere.npy"), &Array::new(vec![2 * F, 3], sphere).unwrap()).unwrap();
    dir
}

#[test]
fn imports_the_fabricated_subject() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fabricate(tmp.path());
    let out = tmp.path().join("brain.safetensors");
    let o = bin()
        .arg("import-algonauts")
        .arg(&dir)
        .arg("--out")
        .arg(&out)
        .arg("--coords")
        .arg(tmp.path().join("sphere.npy"))
        .output()
        .unwrap();
    stdout_ok(&o);
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("18 vertices (10 lh + 8 rh)"), "{stdout}");

    let b = Brain::load_with(&out, false).unwrap();
    assert_eq!(b.responses.shape, vec![N, LH + RH]);
    // Rows are lh vertices then rh vertices.
    let (lh, rh) = (fmri(0, LH), fmri(1, RH));
    for i in 0..N {
        assert_eq!(&b.responses.data[i * 18..i * 18 + LH], &lh.data[i * LH..(i + 1) * LH]);
        assert_eq!(&b.responses.data[i * 18 + LH..(i + 1) * 18], &rh.data[i * RH..(i + 1) * RH]);
    }
    assert_eq!(b.roi_names, vec!["V1", "V2", "V3", "hV4", "FFA-1", "EBA", "PPA"]);
    assert_eq!(b.roi_levels, vec![0, 1, 2, 3, 4, 4, 4]);
    let name = |v: usize| (b.roi[v] >= 0).then(|| b.roi_names[b.roi[v] as usize].as_str());
    let lh_expect = [Some("V1"), Some("V1"), Some("V2"), Some("V2"), Some("V3"), Some("V3"), Some("hV4"), Some("FFA-1"), Some("PPA"), None];
    let rh_expect = [Some("V1"), Some("V1"), Some("V2"), None, Some("hV4"), Some("FFA-1"), Some("EBA"), None];
    for (v, want) in lh_expect.iter().enumerate() {
        assert_eq!(name(v), *want, "lh vertex {v}");
    }
    for (v, want) in rh_expect.iter().enumerate() {
        assert_eq!(name(LH + v), *want, "rh vertex {v}");
    }
    // Coordinates: the all-vertices masks pick fsaverage vertices 0, 2, 4, ... (lh) and
    // 1, 3, 5, ... (rh).
    for v in 0..LH {
        assert_eq!(&b.coords.data[v * 3..v * 3 + 3], &[-100.0, (2 * v) as f32, 1.0]);
    }
    for v in 0..RH {
        assert_eq!(&b.coords.data[(LH + v) * 3..(LH + v) * 3 + 3], &[100.0, (2 * v + 1) as f32, 1.0]);
    }
    assert_eq!(b.subject.as_deref(), Some("subj07"));
    let ids = b.stimulus_ids.as_ref().unwrap();
    assert_eq!(ids.len(), N);
    assert_eq!(ids[0], "train-0001_nsd-00100");
    // And it loads z-scored, as every brain file does.
    let z = Brain::load(&out).unwrap();
    let col: Vec<f32> = (0..N).map(|i| z.responses.data[i * 18 + 3]).collect();
    assert!(col.iter().map(|&x| x as f64).sum::<f64>().abs() < 1e-4);
}

#[test]
fn coordinates_in_challenge_order_and_placeholders() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fabricate(tmp.path());
    let direct: Vec<f32> = (0..(LH + RH) * 3).map(|k| k as f32).collect();
    let cpath = tmp.path().join("coords.npy");
    write_npy(&cpath, &Array::new(vec![LH + RH, 3], direct.clone()).unwrap()).unwrap();
    let imp = import_algonauts(&dir, &AlgonautsOptions { coords: Some(cpath), ..Default::default() }).unwrap();
    assert_eq!(imp.brain.coords.data, direct);
    assert_eq!((imp.n_lh, imp.n_rh, imp.unlabelled, imp.overlapping), (LH, RH, 3, 1));
    assert!(imp.missing_masks.iter().any(|m| m == "lh.floc-words_challenge_space.npy"));
    assert!(!imp.placeholder_coords);

    let imp = import_algonauts(&dir, &AlgonautsOptions::default()).unwrap();
    assert!(imp.placeholder_coords);
    assert_eq!(imp.brain.coords.shape, vec![LH + RH, 3]);

    // Wrong number of coordinate rows is refused with the expected counts.
    let bad = tmp.path().join("bad.npy");
    write_npy(&bad, &Array::new(vec![5, 3], vec![0.0; 15]).unwrap()).unwrap();
    let err = import_algonauts(&dir, &AlgonautsOptions { coords: Some(bad), ..Default::default() }).unwrap_err().to_string();
    assert!(err.contains("18"), "{err}");
}

#[test]
fn missing_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = fabricate(tmp.path());
    std::fs::remove_file(dir.join("training_split/training_fmri/rh_training_fmri.npy")).unwrap();
    let o = bin().arg("import-algonauts").arg(&dir).arg("--out").arg(tmp.path().join("b.safetensors")).output().unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("rh_training_fmri.npy") && err.contains("not found"), "{err}");
}
