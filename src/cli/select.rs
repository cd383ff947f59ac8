//! Selection flags shared by the report commands (`scan`, `pod`, `analyze --snapshot`), as
//! kubectl and ripgrep users expect them; the narrowing itself is [`meshleak_core::selection`].

use clap::ValueEnum;

use meshleak_core::schema::Severity;
use meshleak_core::selection::{FailOn, Selection};

/// Which pods: `-n NS`, `--pod PREFIX` (`-A`, all of them, is the default).
#[derive(clap::Args, Debug, Default)]
pub(super) struct Pods {
    /// Only pods of this Kubernetes namespace.
    #[arg(short = 'n', long = "namespace", value_name = "NS")]
    namespace: Option<String>,
    /// Only pods whose name starts with PREFIX.
    #[arg(long = "pod", value_name = "PREFIX")]
    pod: Option<String>,
    /// Every namespace (the default, as kubectl's -A).
    #[arg(short = 'A', long = "all-namespaces", conflicts_with = "namespace")]
    all_namespaces: bool,
}

/// What to show of them, and what fails the run.
#[derive(clap::Args, Debug, Default)]
pub(super) struct Show {
    /// Only what escapes the mesh: bypassing processes, the findings about them, and the
    /// pods holding them.
    #[arg(long)]
    bypassing: bool,
    /// Only findings of this severity or worse.
    #[arg(long, value_enum, value_name = "LEVEL")]
    severity: Option<LevelArg>,
    /// What makes the exit status 1: a bypassing process (default), a finding of this
    /// severity or worse, or never (0 whenever a report was made).
    #[arg(long, value_enum, default_value_t, value_name = "WHAT")]
    fail_on: FailOnArg,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum LevelArg {
    High,
    Medium,
    Low,
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub(super) enum FailOnArg {
    #[default]
    Bypass,
    High,
    Medium,
    Low,
    Never,
}

impl From<LevelArg> for Severity {
    fn from(l: LevelArg) -> Severity {
        match l {
            LevelArg::High => Severity::High,
            LevelArg::Medium => Severity::Medium,
            LevelArg::Low => Severity::Low,
        }
    }
}

impl Pods {
    /// Whether any of these flags was given.
    pub(super) fn given(&self) -> bool {
        self.namespace.is_some() || self.pod.is_some() || self.all_namespaces
    }
}

impl Show {
    /// Whether any of these flags was given.
    pub(super) fn given(&self) -> bool {
        self.bypassing || self.severity.is_some() || !matches!(self.fail_on, FailOnArg::Bypass)
    }

    pub(super) fn selection(&self, pods: Option<&Pods>) -> Selection {
        Selection {
            namespace: pods.and_then(|p| p.namespace.clone()),
            pod_prefix: pods.and_then(|p| p.pod.clone()),
            bypassing: self.bypassing,
            severity: self.severity.map(Severity::from),
        }
    }

    pub(super) fn fail_on(&self) -> FailOn {
        self.fail_on.to_fail_on()
    }
}

impl FailOnArg {
    pub(super) fn to_fail_on(self) -> FailOn {
        match self {
            FailOnArg::Bypass => FailOn::Bypass,
            FailOnArg::High => FailOn::Severity(Severity::High),
            FailOnArg::Medium => FailOn::Severity(Severity::Medium),
            FailOnArg::Low => FailOn::Severity(Severity::Low),
            FailOnArg::Never => FailOn::Never,
        }
    }
}
