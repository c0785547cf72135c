//! Single-tensor PyTorch files (`torch.save(tensor)`), such as a DiT folder's
//! `silence_latent.pt`: a zip archive holding a pickle (`<dir>/data.pkl`) that rebuilds the tensor
//! from a raw little-endian storage record (`<dir>/data/0`).
//!
//! Reading parses the pickle with candle's unpickler. Writing emits the same minimal pickle torch
//! itself writes for a contiguous CPU tensor, so `torch.load(path, weights_only=True)` reads it.

use std::io::{Read, Write};
use std::path::Path;

use candle_core::pickle::{Object, Stack};
use candle_core::{DType, Device, Tensor};
use zip::write::SimpleFileOptions;

use super::CheckpointError;

/// Read the one tensor stored in `path`.
pub fn read_tensor(path: &Path, device: &Device) -> Result<Tensor, CheckpointError> {
    let malformed = |why: String| CheckpointError::Malformed { file: path.to_path_buf(), why };
    let file = std::fs::File::open(path).map_err(|e| CheckpointError::io(path, e))?;
    let mut archive = zip::ZipArchive::new(std::io::BufReader::new(file))
        .map_err(|e| malformed(format!("not a PyTorch zip archive ({e})")))?;
    let pickle_name = archive
        .file_names()
        .filter_map(|n| n.ok().map(|n| n.into_owned()))
        .find(|n| n.ends_with("data.pkl"))
        .ok_or_else(|| malformed("no data.pkl inside".into()))?;
    let dir = pickle_name.trim_end_matches(".pkl").to_owned();

    let mut stack = Stack::empty();
    {
        let entry = archive.by_name(&pickle_name).map_err(|e| malformed(e.to_string()))?;
        stack.read_loop(&mut std::io::BufReader::new(entry)).map_err(|e| malformed(format!("bad pickle: {e}")))?;
    }
    let root = stack.finalize().map_err(|e| malformed(format!("bad pickle: {e}")))?;
    let info = root
        .into_tensor_info(Object::Unicode("tensor".into()), Path::new(&dir))
        .map_err(|e| malformed(format!("bad pickle: {e}")))?
        .ok_or_else(|| malformed("the pickle does not hold a single tensor".into()))?;
    if !info.layout.is_contiguous() {
        return Err(malformed("the stored tensor is not contiguous".into()));
    }

    let mut bytes = Vec::new();
    archive
        .by_name(&info.path)
        .map_err(|e| malformed(format!("storage record {}: {e}", info.path)))?
        .read_to_end(&mut bytes)
        .map_err(|e| CheckpointError::io(path, e))?;
    let element = info.dtype.size_in_bytes();
    let start = info.layout.start_offset() * element;
    let len = info.layout.shape().elem_count() * element;
    let data = bytes
        .get(start..start + len)
        .ok_or_else(|| malformed(format!("storage holds {} bytes, the tensor needs {}", bytes.len(), start + len)))?;
    Tensor::from_raw_buffer(data, info.dtype, info.layout.shape().dims(), device)
        .map_err(|e| malformed(e.to_string()))
}

/// Pickle opcodes used below (protocol 2).
mod op {
    pub const PROTO: u8 = 0x80;
    pub const GLOBAL: u8 = b'c';
    pub const MARK: u8 = b'(';
    pub const BINUNICODE: u8 = b'X';
    pub const BININT: u8 = b'J';
    pub const TUPLE: u8 = b't';
    pub const EMPTY_TUPLE: u8 = b')';
    pub const BINPERSID: u8 = b'Q';
    pub const NEWFALSE: u8 = 0x89;
    pub const REDUCE: u8 = b'R';
    pub const STOP: u8 = b'.';
}

fn push_global(out: &mut Vec<u8>, module: &str, name: &str) {
    out.push(op::GLOBAL);
    out.extend_from_slice(format!("{module}\n{name}\n").as_bytes());
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(op::BINUNICODE);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn push_int(out: &mut Vec<u8>, v: usize) {
    out.push(op::BININT);
    out.extend_from_slice(&(v as i32).to_le_bytes());
}

fn push_int_tuple(out: &mut Vec<u8>, values: &[usize]) {
    out.push(op::MARK);
    values.iter().for_each(|&v| push_int(out, v));
    out.push(op::TUPLE);
}

/// Write `tensor` to `path` as `torch.save` would (archive folder named after the file stem).
pub fn write_tensor(path: &Path, tensor: &Tensor) -> Result<(), CheckpointError> {
    let storage_class = match tensor.dtype() {
        DType::F32 => "FloatStorage",
        DType::BF16 => "BFloat16Storage",
        DType::F16 => "HalfStorage",
        other => return Err(CheckpointError::Malformed { file: path.into(), why: format!("cannot write {other:?}") }),
    };
    let io = |e: std::io::Error| CheckpointError::io(path, e);
    let dims = tensor.dims().to_vec();
    let strides: Vec<usize> = (0..dims.len()).map(|i| dims[i + 1..].iter().product()).collect();

    let mut pickle = vec![op::PROTO, 2];
    push_global(&mut pickle, "torch._utils", "_rebuild_tensor_v2");
    pickle.push(op::MARK);
    // The storage, by persistent id: ('storage', class, key, location, element count).
    pickle.push(op::MARK);
    push_str(&mut pickle, "storage");
    push_global(&mut pickle, "torch", storage_class);
    push_str(&mut pickle, "0");
    push_str(&mut pickle, "cpu");
    push_int(&mut pickle, tensor.elem_count());
    pickle.push(op::TUPLE);
    pickle.push(op::BINPERSID);
    push_int(&mut pickle, 0); // storage offset
    push_int_tuple(&mut pickle, &dims);
    push_int_tuple(&mut pickle, &strides);
    pickle.push(op::NEWFALSE); // requires_grad
    push_global(&mut pickle, "collections", "OrderedDict");
    pickle.push(op::EMPTY_TUPLE);
    pickle.push(op::REDUCE); // backward hooks: OrderedDict()
    pickle.push(op::TUPLE);
    pickle.push(op::REDUCE);
    pickle.push(op::STOP);

    let data = tensor_bytes(tensor).map_err(|e| CheckpointError::Malformed { file: path.into(), why: e.to_string() })?;
    let dir = path.file_stem().and_then(|s| s.to_str()).unwrap_or("archive").to_owned();
    let file = std::fs::File::create(path).map_err(io)?;
    let mut zip = zip::ZipWriter::new(file);
    let stored = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    for (name, bytes) in [
        ("data.pkl", pickle.as_slice()),
        ("byteorder", b"little".as_slice()),
        ("data/0", data.as_slice()),
        ("version", b"3\n".as_slice()),
    ] {
        zip.start_file(format!("{dir}/{name}"), stored)
            .map_err(|e| CheckpointError::Malformed { file: path.into(), why: e.to_string() })?;
        zip.write_all(bytes).map_err(io)?;
    }
    zip.finish().map_err(|e| CheckpointError::Malformed { file: path.into(), why: e.to_string() })?;
    Ok(())
}

/// The raw little-endian bytes of a tensor, row-major.
pub fn tensor_bytes(tensor: &Tensor) -> candle_core::Result<Vec<u8>> {
    let flat = tensor.flatten_all()?;
    Ok(match tensor.dtype() {
        DType::F32 => flat.to_vec1::<f32>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::BF16 => flat.to_vec1::<half::bf16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        DType::F16 => flat.to_vec1::<half::f16>()?.iter().flat_map(|v| v.to_le_bytes()).collect(),
        other => candle_core::bail!("no byte writer for {other:?}"),
    })
}
