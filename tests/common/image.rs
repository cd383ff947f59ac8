//! The multi-arch image as `make image` writes it to be pushed: an OCI layout
//! (target/meshleak-image, tag VERSION) whose index has one image per platform. Read from
//! the layout's own blobs, so what is checked is what a node pulls.

use std::path::{Path, PathBuf};

use serde_json::Value;

pub const LAYOUT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/target/meshleak-image");

/// Whether the layout is here; under `make test` it must be (see [`super::required`]).
pub fn layout_ready() -> bool {
    super::required(
        Path::new(LAYOUT).join("index.json").exists(),
        "the multi-arch image (target/meshleak-image)",
        "make image",
    )
}

fn blob(digest: &str) -> PathBuf {
    let hex = digest
        .strip_prefix("sha256:")
        .unwrap_or_else(|| panic!("not a sha256 digest: {digest}"));
    Path::new(LAYOUT).join("blobs/sha256").join(hex)
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e} (run `make image`)", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Each image of the index tagged VERSION: its platform ("linux/amd64") and its manifest's
/// digest, in the index's order.
pub fn platforms() -> Vec<(String, String)> {
    let top = read_json(&Path::new(LAYOUT).join("index.json"));
    let index = top["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| {
            m["annotations"]["org.opencontainers.image.ref.name"] == env!("CARGO_PKG_VERSION")
        })
        .unwrap_or_else(|| panic!("{LAYOUT} has no image tagged {}", env!("CARGO_PKG_VERSION")));
    read_json(&blob(index["digest"].as_str().unwrap()))["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let p = &m["platform"];
            (
                format!(
                    "{}/{}",
                    p["os"].as_str().unwrap(),
                    p["architecture"].as_str().unwrap()
                ),
                m["digest"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The image's /meshleak (its only layer's only file), extracted into `dir`.
pub fn binary(manifest: &str, dir: &Path) -> PathBuf {
    let manifest_json = read_json(&blob(manifest));
    let layers = manifest_json["layers"].as_array().unwrap();
    assert_eq!(
        layers.len(),
        1,
        "{manifest}: one layer, the binary: {layers:?}"
    );
    std::fs::create_dir_all(dir).unwrap();
    let layer = blob(layers[0]["digest"].as_str().unwrap());
    super::run(
        &[
            "tar",
            "-xf",
            layer.to_str().unwrap(),
            "-C",
            dir.to_str().unwrap(),
            "meshleak",
        ],
        None,
    );
    dir.join("meshleak")
}
