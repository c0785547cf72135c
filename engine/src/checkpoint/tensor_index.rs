//! The tensors a checkpoint folder's safetensors files hold, read from their headers alone (no
//! weights are read): name -> file, dtype, shape. Also catches truncated and malformed files
//! before anything is memory-mapped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::CheckpointError;

/// A stored tensor's element type, as safetensors names it.
pub type StoredDtype = String;

#[derive(Debug, Clone, PartialEq)]
pub struct TensorEntry {
    pub file: PathBuf,
    pub dtype: StoredDtype,
    pub shape: Vec<usize>,
    /// Where the tensor's bytes start in `file`, and how many there are.
    pub offset: u64,
    pub len: u64,
}

impl TensorEntry {
    /// The tensor's stored bytes, read from the file (not mapped: mapped pages would count in
    /// the process's memory next to the loaded copy while a model loads).
    pub fn read(&self) -> Result<Vec<u8>, CheckpointError> {
        let mut bytes = Vec::new();
        self.read_into(&mut bytes)?;
        Ok(bytes)
    }

    /// [`TensorEntry::read`] into `bytes`, reusing its memory.
    pub fn read_into(&self, bytes: &mut Vec<u8>) -> Result<(), CheckpointError> {
        let mut file = File::open(&self.file).map_err(|e| CheckpointError::io(&self.file, e))?;
        bytes.resize(self.len as usize, 0);
        file.seek(SeekFrom::Start(self.offset)).and_then(|_| file.read_exact(bytes)).map_err(|e| CheckpointError::io(&self.file, e))
    }
}

/// Every tensor of one or more safetensors files.
#[derive(Debug, Clone, Default)]
pub struct TensorIndex {
    pub files: Vec<PathBuf>,
    pub tensors: BTreeMap<String, TensorEntry>,
}

#[derive(Deserialize)]
struct HeaderEntry {
    dtype: String,
    shape: Vec<usize>,
    data_offsets: (u64, u64),
}

/// Largest header we accept; real headers are ~100 kB.
const MAX_HEADER_BYTES: u64 = 100 << 20;

impl TensorIndex {
    pub fn from_files(files: &[PathBuf]) -> Result<Self, CheckpointError> {
        let mut index = Self::default();
        for file in files {
            for (name, entry) in read_header(file)? {
                index.tensors.insert(name, entry);
            }
            index.files.push(file.clone());
        }
        Ok(index)
    }

    pub fn get(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.get(name)
    }

    /// The file a missing tensor would have been in: the only file, or all of them.
    pub fn describe_files(&self) -> String {
        let names: Vec<String> = self.files.iter().map(|f| f.display().to_string()).collect();
        names.join(", ")
    }

    pub fn parameter_count(&self) -> u64 {
        self.tensors.values().map(|e| e.shape.iter().product::<usize>() as u64).sum()
    }
}

fn bytes_per_element(dtype: &str) -> Option<u64> {
    Some(match dtype {
        "F64" | "I64" | "U64" => 8,
        "F32" | "I32" | "U32" => 4,
        "F16" | "BF16" | "I16" | "U16" => 2,
        "F8_E4M3" | "F8_E5M2" | "I8" | "U8" | "BOOL" => 1,
        _ => return None,
    })
}

/// Parse one file's header and check the file is long enough for every tensor it declares.
fn read_header(path: &Path) -> Result<Vec<(String, TensorEntry)>, CheckpointError> {
    let malformed = |why: String| CheckpointError::Malformed { file: path.to_path_buf(), why };
    let mut file = File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let file_len = file.metadata().map_err(|e| CheckpointError::io(path, e))?.len();
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes)
        .map_err(|_| malformed(format!("{file_len} bytes is too short for a safetensors file")))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES || 8 + header_len > file_len {
        return Err(malformed(format!(
            "declares a {header_len}-byte header but the file has {file_len} bytes (truncated, or not safetensors)"
        )));
    }
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(|e| CheckpointError::io(path, e))?;
    let raw: BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| malformed(format!("header is not valid JSON: {e}")))?;

    let data_len = file_len - 8 - header_len;
    let mut entries = Vec::with_capacity(raw.len());
    for (name, value) in raw {
        if name == "__metadata__" {
            continue;
        }
        let entry: HeaderEntry =
            serde_json::from_value(value).map_err(|e| malformed(format!("tensor `{name}`: {e}")))?;
        let (start, end) = entry.data_offsets;
        if end > data_len {
            return Err(malformed(format!(
                "tensor `{name}` ends at byte {end} of the data but the file holds only {data_len} data bytes (truncated)"
            )));
        }
        let elements: u64 = entry.shape.iter().map(|&d| d as u64).product();
        match bytes_per_element(&entry.dtype) {
            Some(size) if end.checked_sub(start) == Some(elements * size) => {}
            Some(_) => return Err(malformed(format!("tensor `{name}`: its byte range does not match its shape"))),
            None => return Err(malformed(format!("tensor `{name}` has unknown dtype {}", entry.dtype))),
        }
        let offset = 8 + header_len + start;
        entries.push((name, TensorEntry { file: path.to_path_buf(), dtype: entry.dtype, shape: entry.shape, offset, len: end - start }));
    }
    Ok(entries)
}
