//! End-to-end checks of the pictures: files are written, decode as PNG of the expected size and
//! actually contain drawing. The pictures are left in CARGO_TARGET_TMPDIR/pictures for a look.

use std::path::{Path, PathBuf};

use factortopy::data::{Array, Brain};
use factortopy::model::Selections;
use factortopy::plot;
use factortopy::scores::{stats, Report};

fn out_dir() -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join("pictures");
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A 30×20 sheet of voxels in three ROI bands (V1, hV4, FFA, left to right, plus an unlabelled
/// strip), with depth growing left to right and uncertainty growing toward the top.
fn toy(with_flat: bool) -> (Brain, Selections) {
    let (nx, ny, l) = (30usize, 20usize, 8usize);
    let v = nx * ny;
    let (mut flat, mut coords, mut roi, mut probs, mut space, mut scale) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    for j in 0..ny {
        for i in 0..nx {
            let (x, y) = (i as f32, j as f32);
            flat.extend_from_slice(&[x, y]);
            // A curved sheet so the 3-D projection has something to find.
            coords.extend_from_slice(&[x, y, 0.02 * (x - 15.0) * (x - 15.0)]);
            roi.push(match i {
                0..=8 => 0,
                9..=17 => 1,
                18..=26 => 2,
                _ => -1,
            });
            let target = i as f32 / (nx - 1) as f32 * (l - 1) as f32;
            let sharp = 0.2 + 3.0 * (1.0 - j as f32 / (ny - 1) as f32);
            let w: Vec<f32> = (0..l)
                .map(|k| (-sharp * (k as f32 - target).powi(2)).exp())
                .collect();
            let z: f32 = w.iter().sum();
            probs.extend(w.iter().map(|w| w / z));
            space.extend_from_slice(&[(x / 14.5 - 1.0) * 0.9, (y / 9.5 - 1.0) * 0.9]);
            scale.push(i as f32 / (nx - 1) as f32);
        }
    }
    let brain = Brain {
        responses: Array::zeros(vec![10, v]).into(),
        coords: Array::new(vec![v, 3], coords).unwrap(),
        roi,
        noise_ceiling: None,
        flat: with_flat.then(|| Array::new(vec![v, 2], flat).unwrap()),
        hemisphere: None,
        roi_names: vec!["V1".into(), "hV4".into(), "FFA".into()],
        roi_levels: vec![0, 3, 4],
        stimulus_ids: None,
        subject: Some("toy".into()),
    };
    let sel = Selections {
        layer_probs: Array::new(vec![v, l], probs).unwrap(),
        space: Array::new(vec![v, 2], space).unwrap(),
        scale,
    };
    (brain, sel)
}

/// Decodes a PNG and returns (width, height, number of pixels that differ from white).
fn decode(path: &Path) -> (u32, u32, usize) {
    let file = std::io::BufReader::new(std::fs::File::open(path).unwrap());
    let mut reader = png::Decoder::new(file).read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Rgb);
    let ink = buf[..info.buffer_size()]
        .chunks(3)
        .filter(|p| *p != [255, 255, 255])
        .count();
    (info.width, info.height, ink)
}

#[test]
fn layer_map_png_decodes_and_has_content() {
    let (brain, sel) = toy(true);
    let path = out_dir().join("layer_map.png");
    plot::layer_map(&path, &brain, &sel, "toy network on the brain").unwrap();
    let (w, h, ink) = decode(&path);
    assert_eq!((w, h), (800, 600));
    assert!(ink > 10_000, "only {ink} drawn pixels");
}

#[test]
fn maps_without_flatmap_use_a_projection() {
    let (brain, sel) = toy(false);
    let dir = out_dir();
    plot::layer_map(
        &dir.join("layer_map_pca.png"),
        &brain,
        &sel,
        "projected coords",
    )
    .unwrap();
    plot::space_map(&dir.join("space_map.png"), &brain, &sel, "space map").unwrap();
    plot::scale_map(&dir.join("scale_map.png"), &brain, &sel, "scale map").unwrap();
    for f in ["layer_map_pca.png", "space_map.png", "scale_map.png"] {
        let (w, h, ink) = decode(&dir.join(f));
        assert_eq!((w, h), (800, 600), "{f}");
        assert!(ink > 10_000, "{f}: only {ink} drawn pixels");
    }
}

#[test]
fn charts_from_series_and_report() {
    let (brain, sel) = toy(true);
    let dir = out_dir();
    let steps: Vec<f64> = (0..=20).map(|k| k as f64 * 500.0).collect();
    let series = vec![
        (
            "overall".to_string(),
            steps
                .iter()
                .map(|&s| (s, 1.0 - 0.3 * (1.0 - (-s / 3000.0).exp())))
                .collect(),
        ),
        (
            "V1".to_string(),
            steps
                .iter()
                .map(|&s| (s, 1.0 - 0.1 * (1.0 - (-s / 3000.0).exp())))
                .collect(),
        ),
        (
            "a rather long ROI name here".to_string(),
            steps
                .iter()
                .map(|&s| (s, 1.0 - 0.5 * (s / 10000.0)))
                .collect(),
        ),
    ];
    plot::line_chart(
        &dir.join("forgetting.png"),
        "retention during fine-tuning",
        "step",
        "retention",
        &series,
    )
    .unwrap();
    let (w, h, ink) = decode(&dir.join("forgetting.png"));
    assert_eq!((w, h), (800, 600));
    assert!(ink > 2_000);

    let v = brain.roi.len();
    let r2 = vec![0.2f32; v];
    let report =
        Report::compute("toy", "factortopy", &[], &sel, &r2, &r2, &brain, true, None).unwrap();
    // Depth grows left to right and so do the ROI levels: a clearly positive slope.
    assert!(report.hierarchy.slope.unwrap() > 0.3, "{}", report.headline());
    plot::profile_chart(&dir.join("roi_profile.png"), (800, 600), &report).unwrap();
    assert_eq!(decode(&dir.join("roi_profile.png")).0, 800);
    // Sanity of the per-voxel helpers on the same scale as the report uses them.
    assert_eq!(
        stats::r2_per_voxel(&[1.0, 2.0], &[1.0, 2.0], 2, 1),
        vec![1.0]
    );
}
