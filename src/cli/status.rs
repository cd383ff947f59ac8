//! Exit statuses, the same for every command (README, `--help`). A script can tell "looked
//! and found nothing" (0) from every answer that is not an all-clear.

/// Looked at everything its verdict needs; nothing bypasses the mesh.
pub(crate) const CLEAN: u8 = 0;
/// Something bypasses the mesh (whatever else is unknown or unread).
pub(crate) const BYPASS: u8 = 1;
/// An error: nothing was judged (message on stderr naming the input). Returned by `main`.
pub(crate) const ERROR: u8 = 2;
/// Nothing definitely bypasses, but some verdict is `unknown`: rules meshleak does not
/// model decide it.
pub(crate) const UNKNOWN: u8 = 3;
/// Nothing definitely bypasses, but something the verdicts need could not be read
/// (processes, namespaces, rules, sockets): what was read is reported.
pub(crate) const INCOMPLETE: u8 = 4;

/// The help text's summary of the statuses, for `concat!` into each command's help.
macro_rules! help {
    () => {
        "Exit status: 0 nothing bypasses (everything needed was read), 1 something bypasses, \
2 error, 3 nothing definitely bypasses but some verdict is unknown (rules meshleak does not model), \
4 nothing definitely bypasses but something could not be read (the report says what)"
    };
}
pub(crate) use help;

/// The statuses alone (the top-level help).
pub(crate) const HELP: &str = help!();

/// The status of an answer: a bypass outranks what could not be read, which outranks what
/// is unknown.
pub(crate) fn of(bypass: bool, incomplete: bool, unknown: bool) -> u8 {
    if bypass {
        BYPASS
    } else if incomplete {
        INCOMPLETE
    } else if unknown {
        UNKNOWN
    } else {
        CLEAN
    }
}
