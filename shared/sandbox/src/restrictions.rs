//! Every restriction of a job's container, derived from its [`Limits`] in one place. The
//! runtimes only translate it: the Docker engine's container and exec configuration
//! ([`super::config`]) and an ECS container definition ([`super::ecs`]); the tests of both
//! check, field by field, that they apply these same values.

use std::time::Duration;

use super::Limits;

/// The sandbox user (non-root), also the owner of `/work`.
pub const USER: &str = "1000:1000";
/// Files allowed in `/work` and in `/tmp` each: inodes cost kernel memory that the size limit
/// alone does not bound.
pub const INODES: u32 = 16384;
/// Capabilities the job keeps: none.
pub const CAPABILITIES_DROPPED: &[&str] = &["ALL"];

/// A size-limited tmpfs of the job's container.
#[derive(Debug, Clone, PartialEq)]
pub struct Tmpfs {
    pub path: &'static str,
    pub size_mib: i64,
    /// Mount options besides the size, e.g. `noexec` or `mode=1777`.
    pub options: Vec<String>,
}

impl Tmpfs {
    /// The options with the size first, as `mount -t tmpfs -o` takes them.
    pub fn mount_options(&self) -> String {
        std::iter::once(format!("size={}m", self.size_mib))
            .chain(self.options.iter().cloned())
            .collect::<Vec<_>>()
            .join(",")
    }
}

/// What a job's container runs under, whatever runs it.
#[derive(Debug, Clone, PartialEq)]
pub struct Restrictions {
    /// Hard memory limit; swap is not allowed beyond it.
    pub memory_mib: i64,
    /// CPU share, in CPUs (0.5: half a core).
    pub cpus: f64,
    /// Processes and threads.
    pub pids: i64,
    /// Wall clock from the command's start; enforced in the container by `timeout -s KILL`.
    pub timeout: Duration,
    /// The user the job's command runs as.
    pub user: &'static str,
    pub read_only_root: bool,
    /// No network at all (only a loopback interface).
    pub network: bool,
    pub capabilities_dropped: &'static [&'static str],
    pub no_new_privileges: bool,
    /// An init as PID 1 that reaps zombies and forwards signals.
    pub init: bool,
    /// Core dumps are off (they would fill `/work` or the host).
    pub core_dump_bytes: i64,
    /// `/tmp`: not executable.
    pub tmp: Tmpfs,
    /// `/work`: the code, inputs and outputs, owned by the sandbox user.
    pub work: Tmpfs,
}

impl Restrictions {
    pub fn of(limits: &Limits) -> Self {
        let common = |extra: &[&str]| -> Vec<String> {
            extra
                .iter()
                .map(|s| s.to_string())
                .chain([
                    format!("nr_inodes={INODES}"),
                    "nosuid".into(),
                    "nodev".into(),
                ])
                .collect()
        };
        Restrictions {
            memory_mib: limits.memory_mb,
            cpus: limits.cpus,
            pids: limits.pids_limit,
            timeout: limits.timeout,
            user: USER,
            read_only_root: true,
            network: false,
            capabilities_dropped: CAPABILITIES_DROPPED,
            no_new_privileges: true,
            init: true,
            core_dump_bytes: 0,
            tmp: Tmpfs {
                path: "/tmp",
                size_mib: limits.tmp_mb,
                options: common(&["rw", "noexec", "mode=1777"]),
            },
            work: Tmpfs {
                path: "/work",
                size_mib: limits.work_mb,
                options: common(&["uid=1000", "gid=1000", "mode=0755"]),
            },
        }
    }

    pub fn memory_bytes(&self) -> i64 {
        self.memory_mib.saturating_mul(1024 * 1024)
    }

    /// The CPU share as the Docker engine counts it (10⁻⁹ CPU).
    pub fn nano_cpus(&self) -> i64 {
        (self.cpus * 1e9).round() as i64
    }

    /// The CPU share as ECS counts it (1024 units per vCPU).
    pub fn cpu_units(&self) -> i64 {
        (self.cpus * 1024.0).round() as i64
    }

    /// The seconds `timeout` and `sleep` are given, rounded up to the millisecond.
    pub fn seconds(d: Duration) -> String {
        format!("{:.3}", d.as_secs_f64() + 0.000_5)
    }

    /// The job's command under the in-container wall clock: killed at the limit even when
    /// nobody outside watches it any more (the image provides coreutils' `timeout`).
    pub fn timed(&self, command: &[String]) -> Vec<String> {
        let mut cmd = vec![
            "timeout".to_string(),
            "-s".into(),
            "KILL".into(),
            Self::seconds(self.timeout),
        ];
        cmd.extend(command.iter().cloned());
        cmd
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The command of a `python3 /work/main.py` job under the default 30 s wall clock, as both
    /// runtimes run it.
    pub(crate) const TIMED_MAIN: [&str; 6] = [
        "timeout",
        "-s",
        "KILL",
        "30.000",
        "python3",
        "/work/main.py",
    ];

    /// Limits off their defaults wherever the runtimes translate them: the Docker and the ECS
    /// mapping tests check their translations of these same values.
    pub(crate) fn off_default_limits() -> Limits {
        Limits {
            memory_mb: 300,
            cpus: 0.75,
            pids_limit: 40,
            tmp_mb: 16,
            work_mb: 32,
            ..Limits::default()
        }
    }

    #[test]
    fn the_seed_limits_become_these_restrictions() {
        let r = Restrictions::of(&Limits::default());
        assert_eq!(r.memory_bytes(), 256 * 1024 * 1024);
        assert_eq!(r.nano_cpus(), 500_000_000);
        assert_eq!(r.cpu_units(), 512);
        assert_eq!(r.pids, 64);
        assert_eq!(r.user, "1000:1000");
        assert!(r.read_only_root && !r.network && r.no_new_privileges && r.init);
        assert_eq!(r.capabilities_dropped, ["ALL"]);
        assert_eq!(
            r.tmp.mount_options(),
            "size=64m,rw,noexec,mode=1777,nr_inodes=16384,nosuid,nodev"
        );
        assert_eq!(
            r.work.mount_options(),
            "size=128m,uid=1000,gid=1000,mode=0755,nr_inodes=16384,nosuid,nodev"
        );
        assert_eq!(
            r.timed(&["python3".into()]),
            ["timeout", "-s", "KILL", "30.000", "python3"]
        );
    }
}
