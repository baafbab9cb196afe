//! Every S3 key of the system: the only place they are built. A user's files live under
//! `{user_id}/{filename}` (the seed's layout); a job's objects under `jobs/{job}/` (what it
//! runs) and `results/{job}/` (what it produced).

use uuid::Uuid;

use crate::files::FileName;

/// `{user_id}/{filename}`, the seed's layout; only a checked [`FileName`] goes in a key.
pub fn user_file_key(user_id: Uuid, filename: &FileName) -> String {
    format!("{user_id}/{filename}")
}

/// Whether `key` is in the users' space, `{user_id}/{filename}` (not a job's `jobs/` or
/// `results/` object). The event rule on the bucket matches the same space by the key's first
/// character, a hex digit: [`USER_KEY_FIRST_CHARS`].
pub fn is_user_file_key(key: &str) -> bool {
    key.split_once('/').is_some_and(|(user, name)| {
        Uuid::try_parse(user).is_ok_and(|u| u.hyphenated().to_string() == user)
            && FileName::parse(name).is_ok_and(|f| f.as_str() == name)
    })
}

/// The first characters of a user's key (a UUID's hex digits; `jobs/` and `results/` start
/// with none of them): what the upload events' rule matches.
pub const USER_KEY_FIRST_CHARS: &str = "0123456789abcdef";

pub const MANIFEST: &str = "manifest.json";

/// The code a job runs.
pub fn code(job: Uuid) -> String {
    format!("jobs/{job}/main.py")
}
pub fn manifest(job: Uuid) -> String {
    format!("jobs/{job}/{MANIFEST}")
}
/// What a job's staging containers read (ECS runtime): the inputs' URLs and the upload form.
pub fn stage(job: Uuid) -> String {
    format!("jobs/{job}/stage.json")
}
/// Where a job's results go, and the only place its stage-out may write.
pub fn results_prefix(job: Uuid) -> String {
    format!("results/{job}/")
}
/// Names under a job's results prefix (the stage-out container, which only knows the prefix
/// its upload form allows, builds its keys from these).
pub const STDOUT: &str = "stdout.txt";
pub const STDERR: &str = "stderr.txt";
pub const OUTPUTS_DIR: &str = "out/";
pub const OUTCOME: &str = "outcome.json";
pub const STAGED: &str = "staged.json";

pub fn stdout(job: Uuid) -> String {
    format!("results/{job}/{STDOUT}")
}
pub fn stderr(job: Uuid) -> String {
    format!("results/{job}/{STDERR}")
}
pub fn output(job: Uuid, name: &str) -> String {
    format!("results/{job}/{OUTPUTS_DIR}{name}")
}
/// The run's outcome, written after its results and before the database records it: a job
/// whose dispatcher died (or lost the database) in between is finished from it, not run again.
pub fn outcome(job: Uuid) -> String {
    format!("results/{job}/{OUTCOME}")
}
/// What a job's stage-out stored (ECS runtime): written last, read when the task's end is
/// recorded.
pub fn staged(job: Uuid) -> String {
    format!("results/{job}/{STAGED}")
}

/// The job a manifest key belongs to (`jobs/{id}/manifest.json`), if it is one.
pub fn job_of_manifest(key: &str) -> Option<Uuid> {
    let rest = key.strip_prefix("jobs/")?;
    let (id, file) = rest.split_once('/')?;
    (file == MANIFEST)
        .then(|| Uuid::parse_str(id).ok())
        .flatten()
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_keys_name_their_job() {
        let id = Uuid::new_v4();
        assert_eq!(job_of_manifest(&manifest(id)), Some(id));
        assert_eq!(job_of_manifest(&code(id)), None);
        assert_eq!(job_of_manifest("jobs/nope/manifest.json"), None);
        assert_eq!(job_of_manifest(&format!("{id}/manifest.json")), None);
    }

    #[test]
    fn user_keys_are_told_from_the_jobs_objects() {
        let id = Uuid::new_v4();
        let key = user_file_key(id, &FileName::parse("a b.csv").unwrap());
        assert!(is_user_file_key(&key));
        assert!(USER_KEY_FIRST_CHARS.contains(&key[..1]));
        for other in [
            format!("jobs/{id}/manifest.json"),
            format!("results/{id}/out/a.csv"),
            format!("{}/a.csv", id.simple()),
            format!("{id}/"),
            format!("{id}/../a.csv"),
            format!("{id}/dir/a.csv"),
            "a.csv".to_string(),
        ] {
            assert!(!is_user_file_key(&other), "{other}");
        }
        for first in ["jobs/", "results/"] {
            assert!(!USER_KEY_FIRST_CHARS.contains(&first[..1]));
        }
    }

    #[test]
    fn key_is_user_then_filename() {
        let id = Uuid::nil();
        assert_eq!(
            user_file_key(id, &FileName::parse("a.csv").unwrap()),
            "00000000-0000-0000-0000-000000000000/a.csv"
        );
    }
}
