//! Stored tensor bytes to f32 on the CPU, on every core, written straight into fresh memory.
//!
//! The published checkpoints are bf16 and the CPU runs f32. candle's `to_dtype` converts on one
//! thread after a zero-filled allocation; here the first touch of each destination page (the page
//! fault, which dominates on a VM) is spread over the cores together with the conversion.
//! bf16 -> f32 is exact (a 16-bit shift).
//!
//! Linear weights can also be written transposed. A `Linear` computes `x · Wᵀ` with `W` stored
//! (out, in); the GEMM kernel wants the `in` x `out` operand with `out` contiguous, and otherwise
//! re-packs all of `W` on every call (with AVX-512 that re-pack cost a quarter of each text-encoder
//! projection). Writing `Wᵀ` once at load, as part of the conversion that happens anyway, costs
//! nothing extra.

use std::mem::MaybeUninit;

use candle_core::Result;

use crate::alloc::fill_fresh;

/// A stored element type: its width, and a run of its little-endian bytes decoded to f32 (written
/// over fixed-size chunks, so the loop compiles to vector code per type).
trait Stored {
    const WIDTH: usize;
    fn decode_run(src: &[u8], dst: &mut [MaybeUninit<f32>]);
}

struct Bf16;
struct F16;
struct F32;

impl Stored for Bf16 {
    const WIDTH: usize = 2;
    fn decode_run(src: &[u8], dst: &mut [MaybeUninit<f32>]) {
        for (d, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
            d.write(f32::from_bits((u16::from_le_bytes(*b) as u32) << 16));
        }
    }
}

impl Stored for F16 {
    const WIDTH: usize = 2;
    fn decode_run(src: &[u8], dst: &mut [MaybeUninit<f32>]) {
        for (d, b) in dst.iter_mut().zip(src.as_chunks::<2>().0) {
            d.write(half::f16::from_bits(u16::from_le_bytes(*b)).to_f32());
        }
    }
}

impl Stored for F32 {
    const WIDTH: usize = 4;
    fn decode_run(src: &[u8], dst: &mut [MaybeUninit<f32>]) {
        for (d, b) in dst.iter_mut().zip(src.as_chunks::<4>().0) {
            d.write(f32::from_le_bytes(*b));
        }
    }
}

/// Call `$f::<T>($args)` with `T` the stored type named by `$stored`.
macro_rules! for_stored {
    ($stored:expr, $f:ident($($arg:expr),*)) => {
        match $stored {
            "BF16" => $f::<Bf16>($($arg),*),
            "F16" => $f::<F16>($($arg),*),
            "F32" => $f::<F32>($($arg),*),
            other => candle_core::bail!("no f32 conversion for {other}"),
        }
    };
}

fn check_len(bytes: &[u8], width: usize, len: usize) -> Result<()> {
    if bytes.len() != len * width {
        candle_core::bail!("{} bytes do not hold {len} elements of {width} bytes", bytes.len());
    }
    Ok(())
}

/// Stored little-endian `BF16`/`F16`/`F32` bytes to f32, same order.
pub fn widen_to_f32(bytes: &[u8], stored: &str) -> Result<Vec<f32>> {
    for_stored!(stored, widen_as(bytes))
}

/// [`widen_to_f32`] into `out`, reusing its memory (a load's scratch between tensors).
pub fn widen_into(bytes: &[u8], stored: &str, out: &mut Vec<f32>) -> Result<()> {
    for_stored!(stored, widen_as_into(bytes, out))
}

fn widen_as_into<T: Stored>(bytes: &[u8], out: &mut Vec<f32>) -> Result<()> {
    let len = bytes.len() / T::WIDTH;
    check_len(bytes, T::WIDTH, len)?;
    crate::alloc::refill(out, len, 1 << 16, |start, out| {
        T::decode_run(&bytes[start * T::WIDTH..(start + out.len()) * T::WIDTH], out);
    });
    Ok(())
}

fn widen_as<T: Stored>(bytes: &[u8]) -> Result<Vec<f32>> {
    let len = bytes.len() / T::WIDTH;
    check_len(bytes, T::WIDTH, len)?;
    Ok(fill_fresh(len, 1 << 16, |start, out| {
        T::decode_run(&bytes[start * T::WIDTH..(start + out.len()) * T::WIDTH], out);
    }))
}

/// Stored little-endian `BF16`/`F16` bytes kept at that width (a copy on every core), as a CPU
/// tensor of that dtype.
pub fn copy_16bit(bytes: &[u8], stored: &str, shape: &[usize], device: &candle_core::Device) -> Result<candle_core::Tensor> {
    fn copy<T: candle_core::WithDType>(bytes: &[u8], from_bits: fn(u16) -> T, shape: &[usize], device: &candle_core::Device) -> Result<candle_core::Tensor> {
        let len = bytes.len() / 2;
        check_len(bytes, 2, len)?;
        let out = fill_fresh(len, 1 << 16, |start, out| {
            for (d, b) in out.iter_mut().zip(bytes[2 * start..].as_chunks::<2>().0) {
                d.write(from_bits(u16::from_le_bytes(*b)));
            }
        });
        candle_core::Tensor::from_vec(out, shape, device)
    }
    match stored {
        "BF16" => copy(bytes, half::bf16::from_bits, shape, device),
        "F16" => copy(bytes, half::f16::from_bits, shape, device),
        other => candle_core::bail!("{other} is not a 16-bit float type"),
    }
}

/// Output rows per parallel task, which is also the side of the square tile the transpose walks
/// in (16 KiB of f32: in L1 both ways).
const TILE: usize = 64;

/// A stored row-major `rows x cols` matrix to f32, transposed: the result is `cols x rows`
/// row-major (element `(c, r)` at `c * rows + r` is stored element `(r, c)`).
pub fn widen_transposed(bytes: &[u8], stored: &str, rows: usize, cols: usize) -> Result<Vec<f32>> {
    let mut out: Vec<f32> = Vec::with_capacity(rows * cols);
    crate::alloc::advise_huge_pages(out.as_mut_ptr().cast(), rows * cols * 4);
    widen_transposed_into(bytes, stored, rows, cols, &mut out)?;
    Ok(out)
}

/// [`widen_transposed`] into `out`, reusing its memory (a load's scratch between tensors).
pub fn widen_transposed_into(bytes: &[u8], stored: &str, rows: usize, cols: usize, out: &mut Vec<f32>) -> Result<()> {
    for_stored!(stored, transpose_as(bytes, rows, cols, out))
}

fn transpose_as<T: Stored>(bytes: &[u8], rows: usize, cols: usize, out: &mut Vec<f32>) -> Result<()> {
    check_len(bytes, T::WIDTH, rows * cols)?;
    crate::alloc::refill(out, rows * cols, TILE * rows, |start, out| {
        if rows == 0 {
            return;
        }
        // This task's output rows are the stored columns `first_col..`. Each tile is read row by
        // row (contiguous in the file), decoded into `tile`, and written out column by column
        // (contiguous in the output); reading down a stored column directly would step a whole
        // stored row per element.
        let first_col = start / rows;
        let out_rows = out.len() / rows;
        let mut tile = [MaybeUninit::<f32>::uninit(); TILE * TILE];
        for r0 in (0..rows).step_by(TILE) {
            let tile_rows = TILE.min(rows - r0);
            for (r, tile_row) in tile.chunks_exact_mut(TILE).take(tile_rows).enumerate() {
                let at = ((r0 + r) * cols + first_col) * T::WIDTH;
                T::decode_run(&bytes[at..at + out_rows * T::WIDTH], &mut tile_row[..out_rows]);
            }
            for c in 0..out_rows {
                let dst = &mut out[c * rows + r0..c * rows + r0 + tile_rows];
                for (r, value) in dst.iter_mut().enumerate() {
                    // Safety: rows `..tile_rows`, columns `..out_rows` of the tile were decoded above.
                    value.write(unsafe { tile[r * TILE + c].assume_init() });
                }
            }
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stored(values: &[f32], dtype: &str) -> Vec<u8> {
        values
            .iter()
            .flat_map(|&v| match dtype {
                "BF16" => half::bf16::from_f32(v).to_le_bytes().to_vec(),
                "F16" => half::f16::from_f32(v).to_le_bytes().to_vec(),
                _ => v.to_le_bytes().to_vec(),
            })
            .collect()
    }

    #[test]
    fn widening_keeps_every_value_in_order() {
        // Values exact in all three types; lengths that do not divide the chunk size.
        let values: Vec<f32> = (0..70_001).map(|i| ((i % 512) as f32 - 256.0) * 0.25).collect();
        for dtype in ["BF16", "F16", "F32"] {
            assert_eq!(widen_to_f32(&stored(&values, dtype), dtype).unwrap(), values, "{dtype}");
        }
    }

    #[test]
    fn transposed_widening_is_the_transpose() {
        // Shapes smaller than, equal to and not a multiple of the tile and the task height.
        for (rows, cols) in [(1, 1), (3, 200), (67, 131), (64, 64), (130, 7), (129, 257)] {
            let values: Vec<f32> = (0..rows * cols).map(|i| (i % 251) as f32 - 125.0).collect();
            for dtype in ["BF16", "F16", "F32"] {
                let t = widen_transposed(&stored(&values, dtype), dtype, rows, cols).unwrap();
                for r in 0..rows {
                    for c in 0..cols {
                        assert_eq!(t[c * rows + r], values[r * cols + c], "{dtype} {rows}x{cols} at ({r}, {c})");
                    }
                }
            }
        }
    }

    #[test]
    fn sixteen_bit_copies_keep_their_type_and_values() {
        let values: Vec<f32> = (0..70_001).map(|i| ((i % 512) as f32 - 256.0) * 0.25).collect();
        for (dtype, want) in [("BF16", candle_core::DType::BF16), ("F16", candle_core::DType::F16)] {
            let t = copy_16bit(&stored(&values, dtype), dtype, &[70_001], &candle_core::Device::Cpu).unwrap();
            assert_eq!(t.dtype(), want);
            assert_eq!(t.to_dtype(candle_core::DType::F32).unwrap().to_vec1::<f32>().unwrap(), values, "{dtype}");
        }
        assert!(copy_16bit(&stored(&values, "F32"), "F32", &[70_001], &candle_core::Device::Cpu).is_err());
    }

    #[test]
    fn wrong_lengths_and_types_are_errors() {
        assert!(widen_to_f32(&[0u8; 3], "BF16").is_err());
        assert!(widen_transposed(&[0u8; 8], "BF16", 3, 3).is_err());
        assert!(widen_to_f32(&[0u8; 8], "I64").is_err());
    }
}
