//! meshleak's core: the rule model, parsers, the OUTPUT-path evaluator and identity analysis.
//!
//! Everything here is pure (no I/O), so verdicts can be tested on plain data and computed
//! offline from saved dumps. Collection and the command line live elsewhere.

pub mod agent;
pub mod analyze;
pub mod attribution;
pub mod civil;
pub mod collect;
pub mod ctnetlink;
pub mod eval;
pub mod explain;
pub mod findings;
pub mod fuzzing;
pub mod json;
pub mod model;
pub mod nft;
pub mod nlmsg;
pub mod observe;
pub mod parallel;
pub mod parse;
pub mod policyreport;
pub mod proxy;
pub mod range;
pub mod render;
pub mod report;
pub mod route;
pub mod rtnl;
pub mod sanitize;
pub mod secrets;
pub mod selection;
pub mod snapshot;
pub mod sockdiag;
pub mod ways;
pub mod xt;
pub mod yaml;
