//! Kubernetes manifests, read before deploy (`meshleak check`): documents with lines,
//! the workloads' pod templates, each container's identity as the kubelet and the
//! runtime will give it, the meshes' exclusion annotations, and the judgement.

pub mod annotations;
pub mod check;
pub mod doc;
pub mod identity;
pub mod sarif;
pub mod workload;

/// The capture rules meshleak ships for meshes by name and version (`check --mesh`): each
/// file says where it comes from, and tests/check.rs loads each into the kernel.
pub const MESH_DEFAULTS: &[(&str, &str)] = &[(
    "istio-1.28",
    include_str!("../../data/meshes/istio-1.28.rules"),
)];
