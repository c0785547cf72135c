//! Fetching a model's folder from the model hub, in the Hugging Face hub's URL layout:
//!
//! - the file list: `GET {endpoint}/api/models/{repo}/tree/{revision}/{folder}?recursive=true`,
//!   JSON entries with each file's size and hash (`lfs.oid`, a SHA-256, for large files; `oid`,
//!   the git blob SHA-1, for the rest), pages joined by the `Link: <...>; rel="next"` header;
//! - a file: `GET {endpoint}/{repo}/resolve/{revision}/{path}`, usually a redirect to a CDN,
//!   with `Range: bytes=N-` to resume.
//!
//! Each file is written to `<name>.part` beside its final place, hashed as it arrives, and renamed
//! into place only once its size and hash are the hub's. A cut connection is resumed from the bytes
//! kept (`attempts` times in one run, and on the next run after that); a cancel or a full disk
//! keeps them too. A file whose hash differs is removed, never left looking complete.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use serde::Deserialize;
use sha1::Digest;

use super::registry::HubModel;

/// The public hub, used unless `HF_ENDPOINT` names another (a mirror, or a test server).
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";
/// Bytes read from the connection between progress reports and cancel checks.
const CHUNK: usize = 1 << 18;

/// Why a download stopped. Every variant says what is kept and what to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DownloadError {
    #[error("cannot reach {url}: {source}")]
    Network { url: String, source: reqwest::Error },
    #[error("{url} answered HTTP {status}{hint}")]
    Status { url: String, status: u16, hint: &'static str },
    #[error("the hub's file list at {url} cannot be read: {why}")]
    Listing { url: String, why: String },
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{dir} has {} free and this download needs {} more: free some space and run again", gb(*available), gb(*needed))]
    NotEnoughSpace { dir: PathBuf, needed: u64, available: u64 },
    #[error("the disk filled up writing {part}; the {kept} bytes written are kept: free some space and run again to resume")]
    DiskFull { part: PathBuf, kept: u64 },
    #[error("the connection was cut during {file} ({kept} of {size} bytes kept in {part}): run again to resume")]
    Cut { file: String, part: PathBuf, kept: u64, size: u64 },
    #[error("{file} does not match the hub's listing ({why}); it was removed: run again to download it afresh")]
    Corrupt { file: String, why: String },
    #[error("the download was cancelled; what was fetched is kept and resumes next time")]
    Cancelled,
}

fn gb(bytes: u64) -> String {
    format!("{:.2} GB", bytes as f64 / 1e9)
}

/// How a file's content is checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FileHash {
    /// SHA-256 of the content, lowercase hex (a large file stored in LFS).
    Sha256(String),
    /// Git's blob id: SHA-1 of `blob {size}\0` and the content, lowercase hex.
    GitBlobSha1(String),
}

/// One file of a model's folder, as the hub lists it.
#[derive(Debug, Clone)]
pub struct HubFile {
    /// The path in the repository (what the download URL names).
    pub repo_path: String,
    /// The path inside the model's folder.
    pub local_path: PathBuf,
    pub size: u64,
    pub hash: FileHash,
}

/// Where a download is, reported after every chunk.
#[derive(Debug, Clone, Copy)]
pub struct DownloadProgress<'a> {
    pub model: &'a str,
    /// The file being fetched, as it is named inside the model's folder.
    pub file: &'a str,
    /// Bytes of the model on disk so far (files kept from earlier runs included) and in all.
    pub done_bytes: u64,
    pub total_bytes: u64,
}

/// What a finished download did.
#[derive(Debug, Clone)]
pub struct DownloadReport {
    pub dir: PathBuf,
    pub files: usize,
    /// Bytes received in this run, and bytes already on disk and verified (whole files kept or
    /// the start of a resumed one).
    pub fetched_bytes: u64,
    pub kept_bytes: u64,
}

/// A hub endpoint and how to talk to it.
pub struct Hub {
    endpoint: String,
    revision: String,
    token: Option<String>,
    client: reqwest::blocking::Client,
    /// Tries per file in one run: a cut connection resumes from the bytes kept until this many
    /// tries have been cut.
    pub attempts: u32,
}

#[derive(Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
    #[serde(default)]
    size: u64,
    #[serde(default)]
    oid: String,
    #[serde(default)]
    lfs: Option<LfsEntry>,
}

#[derive(Deserialize)]
struct LfsEntry {
    oid: String,
    size: u64,
}

/// The hash being computed over a file's bytes as they arrive.
enum Hasher {
    Sha256(sha2::Sha256),
    GitBlobSha1(sha1::Sha1),
}

impl Hasher {
    fn new(hash: &FileHash, size: u64) -> Self {
        match hash {
            FileHash::Sha256(_) => Hasher::Sha256(sha2::Sha256::new()),
            FileHash::GitBlobSha1(_) => {
                let mut h = sha1::Sha1::new();
                h.update(format!("blob {size}\0").as_bytes());
                Hasher::GitBlobSha1(h)
            }
        }
    }

    fn update(&mut self, bytes: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(bytes),
            Hasher::GitBlobSha1(h) => h.update(bytes),
        }
    }

    /// `None` when the content is the listed one, else why not.
    fn mismatch(self, want: &FileHash) -> Option<String> {
        let (got, want, name) = match (self, want) {
            (Hasher::Sha256(h), FileHash::Sha256(w)) => (hex(&h.finalize()), w, "SHA-256"),
            (Hasher::GitBlobSha1(h), FileHash::GitBlobSha1(w)) => (hex(&h.finalize()), w, "git blob SHA-1"),
            _ => unreachable!("a hasher is made for its file's hash kind"),
        };
        (!got.eq_ignore_ascii_case(want)).then(|| format!("{name} {got}, the hub lists {want}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The `rel="next"` URL of a `Link` header, if any.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get(reqwest::header::LINK)?.to_str().ok()?;
    link.split(',').find(|part| part.contains("rel=\"next\"")).and_then(|part| {
        let start = part.find('<')? + 1;
        let end = part.find('>')?;
        Some(part[start..end].to_string())
    })
}

/// A listed path made safe to join under the model's folder: relative, no `..`.
fn safe_relative(path: &str) -> Option<PathBuf> {
    let path = Path::new(path);
    path.components().all(|c| matches!(c, Component::Normal(_))).then(|| path.to_path_buf())
}

fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".part");
    dest.with_file_name(name)
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// Free bytes on the filesystem holding `dir`, when the OS says.
fn available_bytes(dir: &Path) -> Option<u64> {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt;
        let path = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
        let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: `path` is a valid C string and `stat` a writable statvfs.
        let ok = unsafe { libc::statvfs(path.as_ptr(), &mut stat) } == 0;
        ok.then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
    }
    #[cfg(not(unix))]
    {
        let _ = dir;
        None
    }
}

/// Hash the first `len` bytes of `path` (a kept `.part`, or a complete file).
fn hash_prefix(path: &Path, hasher: &mut Hasher, len: u64) -> Result<(), DownloadError> {
    let io = |e| DownloadError::Io { path: path.to_path_buf(), source: e };
    let mut file = File::open(path).map_err(io)?.take(len);
    let mut buffer = vec![0u8; CHUNK];
    loop {
        let n = file.read(&mut buffer).map_err(io)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buffer[..n]);
    }
}

/// One try at one file ended without it being complete.
enum Interrupted {
    /// The connection ended early; `kept` bytes are in the part file.
    Cut { kept: u64 },
    Failed(DownloadError),
}

impl From<DownloadError> for Interrupted {
    fn from(e: DownloadError) -> Self {
        Interrupted::Failed(e)
    }
}

impl Hub {
    /// The hub `HF_ENDPOINT` names (else the public one), with `HF_TOKEN` for gated or private
    /// repositories when set.
    pub fn from_env() -> Self {
        let endpoint = std::env::var("HF_ENDPOINT").ok().filter(|e| !e.trim().is_empty());
        let mut hub = Self::new(endpoint.as_deref().unwrap_or(DEFAULT_ENDPOINT));
        hub.token = std::env::var("HF_TOKEN").ok().filter(|t| !t.is_empty());
        hub
    }

    pub fn new(endpoint: &str) -> Self {
        let client = reqwest::blocking::Client::builder()
            .user_agent(concat!("backline/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(Duration::from_secs(30))
            // Weights take minutes: no limit on the whole request, only on its silences.
            .timeout(None::<Duration>)
            .build()
            .expect("a TLS client builds with the bundled roots");
        Self { endpoint: endpoint.trim_end_matches('/').to_string(), revision: "main".into(), token: None, client, attempts: 3 }
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    fn get(&self, url: &str, from_byte: u64) -> Result<reqwest::blocking::Response, DownloadError> {
        let mut request = self.client.get(url);
        if let Some(token) = &self.token {
            request = request.bearer_auth(token);
        }
        if from_byte > 0 {
            request = request.header(reqwest::header::RANGE, format!("bytes={from_byte}-"));
        }
        let response = request.send().map_err(|source| DownloadError::Network { url: url.into(), source })?;
        let status = response.status();
        if status.is_success() || status == reqwest::StatusCode::RANGE_NOT_SATISFIABLE {
            return Ok(response);
        }
        let hint = match status.as_u16() {
            401 | 403 => " (a gated or private repository: set HF_TOKEN)",
            404 => " (no such repository or file: check the model name and HF_ENDPOINT)",
            _ => "",
        };
        Err(DownloadError::Status { url: url.into(), status: status.as_u16(), hint })
    }

    /// The files of `model`'s folder with their sizes and hashes.
    pub fn list(&self, model: &HubModel) -> Result<Vec<HubFile>, DownloadError> {
        let folder = model.folder_in_repo.map(|f| format!("/{f}")).unwrap_or_default();
        let first = format!("{}/api/models/{}/tree/{}{folder}?recursive=true", self.endpoint, model.repo, self.revision);
        let mut files = Vec::new();
        let mut next = Some(first.clone());
        while let Some(url) = next.take() {
            let response = self.get(&url, 0)?;
            next = next_page(response.headers());
            let listing = |why: String| DownloadError::Listing { url: url.clone(), why };
            let entries: Vec<TreeEntry> = serde_json::from_reader(response).map_err(|e| listing(e.to_string()))?;
            for entry in entries.into_iter().filter(|e| e.kind == "file") {
                let Some(inside) = model.local_path(&entry.path) else { continue };
                let local_path = safe_relative(inside).ok_or_else(|| listing(format!("unsafe path `{}`", entry.path)))?;
                let (size, hash) = match entry.lfs {
                    Some(lfs) => (lfs.size, FileHash::Sha256(lfs.oid)),
                    None if !entry.oid.is_empty() => (entry.size, FileHash::GitBlobSha1(entry.oid)),
                    None => return Err(listing(format!("`{}` has no hash", entry.path))),
                };
                files.push(HubFile { repo_path: entry.path, local_path, size, hash });
            }
        }
        if files.is_empty() {
            return Err(DownloadError::Listing { url: first, why: format!("no files for {}", model.name) });
        }
        Ok(files)
    }

    /// Download `model` into `checkpoints/<name>/`: files already there and matching are kept,
    /// partial ones resumed. `progress` hears of every chunk; `cancel` stops between chunks.
    pub fn download(
        &self,
        model: &HubModel,
        checkpoints: &Path,
        progress: &dyn Fn(DownloadProgress),
        cancel: &AtomicBool,
    ) -> Result<DownloadReport, DownloadError> {
        let files = self.list(model)?;
        let dir = checkpoints.join(model.name);
        std::fs::create_dir_all(&dir).map_err(|e| DownloadError::Io { path: dir.clone(), source: e })?;

        // Which files are already complete, and what the rest still needs on disk.
        let total_bytes: u64 = files.iter().map(|f| f.size).sum();
        let mut complete = Vec::with_capacity(files.len());
        let mut needed = 0;
        for file in &files {
            let dest = dir.join(&file.local_path);
            let done = file_len(&dest) == file.size && {
                let mut hasher = Hasher::new(&file.hash, file.size);
                hash_prefix(&dest, &mut hasher, file.size)?;
                hasher.mismatch(&file.hash).is_none()
            };
            if !done {
                needed += file.size.saturating_sub(file_len(&part_path(&dest)));
            }
            complete.push(done);
        }
        if let Some(available) = available_bytes(&dir) {
            if needed > available {
                return Err(DownloadError::NotEnoughSpace { dir, needed, available });
            }
        }

        let mut report = DownloadReport { dir: dir.clone(), files: files.len(), fetched_bytes: 0, kept_bytes: 0 };
        let mut done_bytes = 0;
        for (file, complete) in files.iter().zip(complete) {
            let name = file.local_path.to_string_lossy();
            if complete {
                report.kept_bytes += file.size;
            } else {
                let dest = dir.join(&file.local_path);
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent).map_err(|e| DownloadError::Io { path: parent.into(), source: e })?;
                }
                let report_bytes = |file_bytes: u64| {
                    progress(DownloadProgress { model: model.name, file: &name, done_bytes: done_bytes + file_bytes, total_bytes })
                };
                let (fetched, kept) = self.fetch_file(model, file, &dest, &report_bytes, cancel)?;
                report.fetched_bytes += fetched;
                report.kept_bytes += kept;
            }
            done_bytes += file.size;
            progress(DownloadProgress { model: model.name, file: &name, done_bytes, total_bytes });
        }
        Ok(report)
    }

    /// Fetch one file to `dest` through its part file, resuming after cuts; returns the bytes
    /// received and the bytes kept from before.
    fn fetch_file(
        &self,
        model: &HubModel,
        file: &HubFile,
        dest: &Path,
        progress: &dyn Fn(u64),
        cancel: &AtomicBool,
    ) -> Result<(u64, u64), DownloadError> {
        let part = part_path(dest);
        let kept_at_start = file_len(&part).min(file.size);
        let mut received = 0;
        let tries = self.attempts.max(1);
        for attempt in 1..=tries {
            match self.fetch_once(model, file, &part, &mut received, progress, cancel) {
                Ok(()) => break,
                Err(Interrupted::Cut { kept }) if attempt == tries => {
                    let name = file.local_path.to_string_lossy().into_owned();
                    return Err(DownloadError::Cut { file: name, part, kept, size: file.size });
                }
                Err(Interrupted::Cut { .. }) => {}
                Err(Interrupted::Failed(e)) => return Err(e),
            }
        }
        std::fs::rename(&part, dest).map_err(|e| DownloadError::Io { path: dest.into(), source: e })?;
        Ok((received, kept_at_start))
    }

    /// One request for the rest of a file, appended to `part` (counting what arrives in
    /// `received`), then its size and hash checked.
    fn fetch_once(
        &self,
        model: &HubModel,
        file: &HubFile,
        part: &Path,
        received: &mut u64,
        progress: &dyn Fn(u64),
        cancel: &AtomicBool,
    ) -> Result<(), Interrupted> {
        let io = |e| DownloadError::Io { path: part.to_path_buf(), source: e };
        let mut kept = file_len(part);
        if kept > file.size {
            kept = 0;
        }
        let url = format!("{}/{}/resolve/{}/{}", self.endpoint, model.repo, self.revision, file.repo_path);
        let mut response = self.get(&url, kept)?;
        let status = response.status().as_u16();
        if status == 416 && kept != file.size {
            // The server has no bytes past ours, yet ours are too few: start the file afresh.
            std::fs::remove_file(part).map_err(io)?;
            return Err(Interrupted::Cut { kept: 0 });
        }
        let resumed = kept > 0
            && match status {
                206 => response
                    .headers()
                    .get(reqwest::header::CONTENT_RANGE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|r| r.starts_with(&format!("bytes {kept}-"))),
                416 => true,
                _ => false,
            };
        if !resumed {
            kept = 0;
        }
        let mut out = OpenOptions::new().create(true).write(true).truncate(!resumed).append(resumed).open(part).map_err(io)?;
        let mut hasher = Hasher::new(&file.hash, file.size);
        hash_prefix(part, &mut hasher, kept)?;
        progress(kept);

        // A 416 here means the part already holds the whole file: nothing to read.
        let mut buffer = vec![0u8; CHUNK];
        if status != 416 {
            loop {
                if cancel.load(Ordering::Relaxed) {
                    return Err(DownloadError::Cancelled.into());
                }
                let n = match response.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                    Err(_) => return Err(Interrupted::Cut { kept }),
                };
                if n as u64 > file.size - kept {
                    return Err(corrupt(file, part, format!("the server sent more than the listed {} bytes", file.size)).into());
                }
                if let Err(e) = out.write_all(&buffer[..n]) {
                    let full = e.kind() == ErrorKind::StorageFull;
                    return Err(if full { DownloadError::DiskFull { part: part.to_path_buf(), kept } } else { io(e) }.into());
                }
                hasher.update(&buffer[..n]);
                kept += n as u64;
                *received += n as u64;
                progress(kept);
            }
        }
        if kept < file.size {
            return Err(Interrupted::Cut { kept });
        }
        out.sync_all().map_err(io)?;
        match hasher.mismatch(&file.hash) {
            None => Ok(()),
            Some(why) => Err(corrupt(file, part, why).into()),
        }
    }
}

/// Remove a part file that is not the listed file and say so.
fn corrupt(file: &HubFile, part: &Path, why: String) -> DownloadError {
    let _ = std::fs::remove_file(part);
    DownloadError::Corrupt { file: file.local_path.to_string_lossy().into_owned(), why }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn git_blob_ids_are_gits() {
        // `printf 'hello\n' | git hash-object --stdin`
        let want = FileHash::GitBlobSha1("ce013625030ba8dba906f756967f9e9ca394464a".into());
        let mut h = Hasher::new(&want, 6);
        h.update(b"hello\n");
        assert_eq!(h.mismatch(&want), None);
    }

    #[test]
    fn listed_paths_never_leave_the_folder() {
        assert!(safe_relative("model.safetensors").is_some());
        assert!(safe_relative("sub/config.json").is_some());
        assert!(safe_relative("../evil").is_none());
        assert!(safe_relative("/etc/passwd").is_none());
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::LINK, "<https://hub/api/models/a/tree/main?cursor=xyz>; rel=\"next\"".parse().unwrap());
        assert_eq!(next_page(&headers).as_deref(), Some("https://hub/api/models/a/tree/main?cursor=xyz"));
    }
}
