//! A model hub on loopback for download tests: it serves checkpoint folders from disk in the
//! Hugging Face hub's URL layout (the `tree` listing API with sizes and hashes, `resolve` URLs
//! redirecting large files to a CDN path, `Range` requests), and can misbehave on purpose: cut a
//! connection part-way through a file, or serve one byte changed.
//!
//! One thread per connection, HTTP/1.1 with `Connection: close`: small, and enough for
//! `reqwest`'s blocking client.
// Shared by the engine's and the plugin's tests, which each use part of it.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::Digest;

/// One repository: its files by repository path.
#[derive(Debug, Clone, Default)]
struct Repo {
    files: BTreeMap<String, PathBuf>,
}

/// What a test has the hub do wrong.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Cut the connection after this many bytes of the body, for the first `times` requests of
    /// files whose path ends with `file`.
    pub cut: Option<(String, u64, usize)>,
    /// Flip one byte in the middle of files whose path ends with this.
    pub corrupt: Option<String>,
    /// Send the first 64 KiB of files whose path ends with this, then wait this long before the rest.
    pub stall: Option<(String, std::time::Duration)>,
}

/// One served file request, as the hub saw it.
#[derive(Debug, Clone)]
pub struct Served {
    pub path: String,
    /// The `Range` start, when the request asked for one.
    pub range_start: Option<u64>,
    pub body_bytes: u64,
}

#[derive(Default)]
struct State {
    repos: BTreeMap<String, Repo>,
    faults: Faults,
    served: Vec<Served>,
}

pub struct LoopbackHub {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

/// Files above this size are "LFS" files: listed with a SHA-256 and redirected to the CDN path.
const LFS_THRESHOLD: u64 = 10_000;

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn files_under(dir: &Path, prefix: &str, out: &mut BTreeMap<String, PathBuf>) {
    let mut entries: Vec<_> = std::fs::read_dir(dir).expect("readable folder").filter_map(Result::ok).collect();
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let name = entry.file_name().to_string_lossy().into_owned();
        let path = if prefix.is_empty() { name } else { format!("{prefix}/{name}") };
        if entry.path().is_dir() {
            files_under(&entry.path(), &path, out);
        } else {
            out.insert(path, entry.path());
        }
    }
}

impl LoopbackHub {
    pub fn start() -> LoopbackHub {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let endpoint = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(State::default()));
        let shared = state.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let state = shared.clone();
                std::thread::spawn(move || {
                    let _ = serve(stream, &state);
                });
            }
        });
        LoopbackHub { endpoint, state }
    }

    /// Serve `dir`'s files in `repo` under `folder` (the repository's root when empty), as the
    /// main repository holds several model folders and the others hold one at their root.
    pub fn add_folder(&self, repo: &str, folder: &str, dir: &Path) {
        let mut state = self.state.lock().unwrap();
        let entry = state.repos.entry(repo.to_string()).or_default();
        files_under(dir, folder, &mut entry.files);
        entry.files.insert(".gitattributes".into(), PathBuf::new());
    }

    pub fn set_faults(&self, faults: Faults) {
        self.state.lock().unwrap().faults = faults;
    }

    /// Every file request so far, oldest first.
    pub fn served(&self) -> Vec<Served> {
        self.state.lock().unwrap().served.clone()
    }
}

fn content(path: &Path) -> Vec<u8> {
    if path.as_os_str().is_empty() {
        b"*.safetensors filter=lfs diff=lfs merge=lfs -text\n".to_vec()
    } else {
        std::fs::read(path).expect("served file readable")
    }
}

fn listing(repo: &Repo, folder: &str) -> String {
    let mut entries = Vec::new();
    for (path, file) in &repo.files {
        if !folder.is_empty() && !path.starts_with(&format!("{folder}/")) {
            continue;
        }
        let bytes = content(file);
        let size = bytes.len() as u64;
        let mut blob = sha1::Sha1::new();
        blob.update(format!("blob {size}\0").as_bytes());
        blob.update(&bytes);
        let mut entry = serde_json::json!({ "type": "file", "oid": hex(&blob.finalize()), "size": size, "path": path });
        if size > LFS_THRESHOLD {
            entry["lfs"] = serde_json::json!({ "oid": hex(&sha2::Sha256::digest(&bytes)), "size": size, "pointerSize": 134 });
        }
        entries.push(entry);
    }
    serde_json::Value::Array(entries).to_string()
}

fn respond(stream: &mut TcpStream, status: &str, headers: &[(&str, String)], body: &[u8]) -> std::io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)
}

fn serve(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range_start = value.trim().trim_end_matches('-').parse::<u64>().ok();
        }
    }
    let target = request_line.split_whitespace().nth(1).unwrap_or("/").to_string();
    let (path, _query) = target.split_once('?').unwrap_or((&target, ""));

    // GET /api/models/{owner}/{name}/tree/main[/{folder}]
    if let Some(rest) = path.strip_prefix("/api/models/") {
        let parts: Vec<&str> = rest.splitn(5, '/').collect();
        let repo = format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""));
        let folder = parts.get(4).copied().unwrap_or("");
        let body = state.lock().unwrap().repos.get(&repo).map(|r| listing(r, folder));
        return match body {
            Some(body) => respond(&mut stream, "200 OK", &[("Content-Type", "application/json".into())], body.as_bytes()),
            None => respond(&mut stream, "404 Not Found", &[], b"{\"error\":\"Repository not found\"}"),
        };
    }
    // GET /{owner}/{name}/resolve/main/{path} (redirected to /cdn/... when large), /cdn/{owner}/{name}/{path}
    let (cdn, rest) = match path.strip_prefix("/cdn/") {
        Some(rest) => (true, rest),
        None => (false, path.trim_start_matches('/')),
    };
    let parts: Vec<&str> = rest.splitn(if cdn { 3 } else { 5 }, '/').collect();
    let repo = format!("{}/{}", parts[0], parts.get(1).unwrap_or(&""));
    let file_path = if cdn { parts.get(2) } else { parts.get(4) }.copied().unwrap_or("").to_string();
    let (file, faults) = {
        let state = state.lock().unwrap();
        (state.repos.get(&repo).and_then(|r| r.files.get(&file_path)).cloned(), state.faults.clone())
    };
    let Some(file) = file else {
        return respond(&mut stream, "404 Not Found", &[], b"Entry not found");
    };
    let mut bytes = content(&file);
    if !cdn && bytes.len() as u64 > LFS_THRESHOLD {
        return respond(&mut stream, "302 Found", &[("Location", format!("/cdn/{repo}/{file_path}")), ("Content-Length", "0".into())], b"");
    }
    if faults.corrupt.as_ref().is_some_and(|c| file_path.ends_with(c.as_str())) {
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x55;
    }
    let size = bytes.len() as u64;
    let start = range_start.unwrap_or(0);
    let cut = {
        let mut state = state.lock().unwrap();
        let cut = match &mut state.faults.cut {
            Some((name, after, times)) if file_path.ends_with(name.as_str()) && *times > 0 => {
                *times -= 1;
                Some(*after)
            }
            _ => None,
        };
        let body_bytes = cut.unwrap_or(u64::MAX).min(size.saturating_sub(start));
        state.served.push(Served { path: file_path.clone(), range_start, body_bytes });
        cut
    };
    if start >= size && range_start.is_some() {
        return respond(&mut stream, "416 Range Not Satisfiable", &[("Content-Range", format!("bytes */{size}"))], b"");
    }
    let body = &bytes[start as usize..];
    let mut headers = vec![("Content-Length", body.len().to_string())];
    let status = if range_start.is_some() {
        headers.push(("Content-Range", format!("bytes {start}-{}/{size}", size - 1)));
        "206 Partial Content"
    } else {
        "200 OK"
    };
    match cut {
        // Promise the whole body, send part of it, and hang up.
        Some(after) => {
            let sent = (after as usize).min(body.len());
            respond(&mut stream, status, &headers, &body[..sent])?;
            stream.flush()?;
            stream.shutdown(std::net::Shutdown::Both)
        }
        None => match faults.stall.filter(|(name, _)| file_path.ends_with(name.as_str())) {
            Some((_, pause)) if body.len() > 1 << 16 => {
                respond(&mut stream, status, &headers, &body[..1 << 16])?;
                stream.flush()?;
                std::thread::sleep(pause);
                stream.write_all(&body[1 << 16..])
            }
            _ => respond(&mut stream, status, &headers, body),
        },
    }
}

/// Whether two folders exist and hold the same files with the same bytes.
pub fn same_files(a: &Path, b: &Path) -> bool {
    if !a.is_dir() || !b.is_dir() {
        return false;
    }
    let (mut fa, mut fb) = (BTreeMap::new(), BTreeMap::new());
    files_under(a, "", &mut fa);
    files_under(b, "", &mut fb);
    fa.keys().eq(fb.keys()) && fa.iter().all(|(name, path)| std::fs::read(path).ok() == std::fs::read(&fb[name]).ok())
}
