//! The user the bootstrap runs as. Like AWS and LocalStack's own init: `sbx_user1051`
//! (uid 993, gid 990) unless `LOCALSTACK_USER` names another user or `root`. When the Docker
//! socket is mounted into the container, its group is added as a supplementary group so that a
//! function that starts containers (compute-dispatch) reaches the engine without running as root.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;

use crate::config::{DEFAULT_GID, DEFAULT_UID, DEFAULT_USER};

pub const DOCKER_SOCKET: &str = "/var/run/docker.sock";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (empty for root: it keeps its own).
    pub groups: Vec<u32>,
}

impl RunAs {
    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// A user `name` (uid, gid) whose only supplementary group is its own `gid`.
    fn member(name: &str, uid: u32, gid: u32) -> RunAs {
        RunAs {
            name: name.into(),
            uid,
            gid,
            groups: vec![gid],
        }
    }
}

/// Looks `name` up in passwd-format `text`: (uid, gid).
pub fn lookup_passwd(text: &str, name: &str) -> Option<(u32, u32)> {
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() >= 4 && f[0] == name {
            Some((f[2].parse().ok()?, f[3].parse().ok()?))
        } else {
            None
        }
    })
}

/// Resolves the user: `root`, a name from /etc/passwd, `uid[:gid]`, or the sandbox user (added to
/// /etc/passwd when missing, as LocalStack's init does).
pub fn resolve(user: &str, passwd: &str) -> (RunAs, bool) {
    if user == "root" || user == "0" {
        return (
            RunAs {
                name: "root".into(),
                uid: 0,
                gid: 0,
                groups: Vec::new(),
            },
            false,
        );
    }
    if let Some((uid, gid)) = lookup_passwd(passwd, user) {
        return (RunAs::member(user, uid, gid), false);
    }
    if let Some((u, g)) = user.split_once(':').or(Some((user, ""))) {
        if let Ok(uid) = u.parse::<u32>() {
            let gid = g.parse::<u32>().unwrap_or(uid);
            return (RunAs::member(user, uid, gid), false);
        }
    }
    let name = if user.is_empty() { DEFAULT_USER } else { user };
    (RunAs::member(name, DEFAULT_UID, DEFAULT_GID), true)
}

/// The group of the mounted Docker socket, if it is a group-accessible socket.
pub fn docker_socket_gid(path: &Path) -> Option<u32> {
    use std::os::unix::fs::FileTypeExt;
    let meta = fs::metadata(path).ok()?;
    (meta.file_type().is_socket() && meta.mode() & 0o060 == 0o060).then_some(meta.gid())
}

/// Prepares the container for `user` (passwd entry, /tmp ownership, LocalStack's chmod list) and
/// returns who the bootstrap runs as. Failures are warnings: the function may still work.
pub fn prepare(
    user: &str,
    chmod_paths: &[(std::path::PathBuf, u32)],
    warn: &dyn Fn(String),
) -> RunAs {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    let (mut run_as, add_entry) = resolve(user, &passwd);
    if add_entry {
        let line = format!(
            "{}:x:{}:{}::/tmp:/sbin/nologin\n",
            run_as.name, run_as.uid, run_as.gid
        );
        let appended = fs::OpenOptions::new()
            .append(true)
            .open("/etc/passwd")
            .and_then(|mut f| f.write_all(line.as_bytes()));
        if let Err(e) = appended {
            warn(format!("could not add {} to /etc/passwd: {e}", run_as.name));
        }
    }
    for (path, mode) in chmod_paths {
        if let Err(e) = chmod_recursive(path, *mode) {
            warn(format!("chmod {:o} {}: {e}", mode, path.display()));
        }
    }
    if !run_as.is_root() {
        // /tmp belongs to the function user (AWS: 0700, owned by the sandbox user).
        let rc = unsafe { libc::chown(c"/tmp".as_ptr(), run_as.uid, run_as.gid) };
        if rc != 0 {
            warn(format!("chown /tmp: {}", std::io::Error::last_os_error()));
        }
        if let Some(gid) = docker_socket_gid(Path::new(DOCKER_SOCKET)) {
            if !run_as.groups.contains(&gid) {
                run_as.groups.push(gid);
            }
        }
    }
    run_as
}

fn chmod_recursive(path: &Path, mode: u32) -> std::io::Result<()> {
    let meta = fs::symlink_metadata(path)?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(path, fs::Permissions::from_mode(mode))?;
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            chmod_recursive(&entry?.path(), mode)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nsbx_user1051:x:993:990::/tmp:/sbin/nologin\napp:x:1000:1001::/home/app:/bin/sh\n";

    #[test]
    fn resolves_users() {
        assert!(resolve("root", PASSWD).0.is_root());
        assert_eq!(
            resolve("sbx_user1051", PASSWD),
            (
                RunAs {
                    name: "sbx_user1051".into(),
                    uid: 993,
                    gid: 990,
                    groups: vec![990]
                },
                false
            )
        );
        assert_eq!(resolve("app", PASSWD).0.gid, 1001);
        assert_eq!(
            resolve("1234:55", PASSWD).0,
            RunAs {
                name: "1234:55".into(),
                uid: 1234,
                gid: 55,
                groups: vec![55]
            }
        );
        let (missing, add) = resolve("sbx_user1051", "root:x:0:0::/:/bin/sh\n");
        assert!(add);
        assert_eq!((missing.uid, missing.gid), (993, 990));
    }

    #[test]
    fn socket_gid_only_for_sockets() {
        assert_eq!(docker_socket_gid(Path::new("/etc/passwd")), None);
        assert_eq!(docker_socket_gid(Path::new("/nonexistent")), None);
    }
}
