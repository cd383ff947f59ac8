//! meshleak's core: the rule model, parsers and decoders over bytes, the OUTPUT-path
//! evaluator, identity analysis, findings and reports.
//!
//! Nothing here does I/O: no crate that could is a dependency (the compiler refuses it), so
//! verdicts are tested on plain data and computed offline from saved dumps and snapshots.
//! Reading the running system is `meshleak-collect`'s job; the command line and the agent
//! are the `meshleak` binary's. ARCHITECTURE.md maps the modules.

#![forbid(unsafe_code)]
// Printing is I/O too: the core returns text, its callers write it.
#![deny(clippy::print_stdout, clippy::print_stderr)]

pub mod analyze;
pub mod attribution;
pub mod civil;
pub mod cnproc;
pub mod ctnetlink;
pub mod eval;
pub mod explain;
pub mod findings;
pub mod fuzzing;
pub mod held;
pub mod json;
pub mod manifest;
pub mod meshes;
pub mod model;
mod named;
pub mod nft;
pub mod nlmsg;
pub mod observe;
pub mod parallel;
pub mod parse;
pub mod policyreport;
pub mod procnet;
pub mod proxy;
pub mod range;
pub mod render;
pub mod report;
pub mod route;
pub mod rtnl;
pub mod sanitize;
pub mod schema;
pub mod secrets;
pub mod selection;
pub mod snapshot;
pub mod sockdiag;
pub mod taskfiles;
pub mod wanted;
pub mod ways;
pub mod xt;
pub mod yaml;

#[cfg(test)]
mod tests {
    /// The core's promise is kept by its manifest: no crate that can do I/O is among its
    /// dependencies, so none can be called here (ARCHITECTURE.md). Adding one is a decision
    /// to make here, not in passing.
    #[test]
    fn no_io_crate_is_a_dependency() {
        let manifest = include_str!("../Cargo.toml");
        let section = manifest
            .split("\n[dependencies]\n")
            .nth(1)
            .and_then(|rest| rest.split("\n[").next())
            .expect("a [dependencies] section");
        let names: Vec<&str> = section
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
            .filter_map(|l| l.split(['.', ' ', '=']).next())
            .collect();
        // yaml-rust2: a parser over a `&str` (with its encoding feature off) for `check`'s
        // manifests; it reads no file.
        assert_eq!(
            names,
            [
                "ipnet",
                "libc",
                "serde",
                "serde_json",
                "thiserror",
                "yaml-rust2"
            ]
        );
    }
}
