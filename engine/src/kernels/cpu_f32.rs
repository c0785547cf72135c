//! Borrowed views of contiguous f32 CPU tensors, for the kernels that work on plain slices
//! (`attention`, `fused_residual`, the VAE's Snake).

use candle_core::Tensor;

/// The values of a contiguous f32 tensor on the CPU, borrowed from its storage.
pub struct CpuF32<'a> {
    /// The storage's read guard (candle's lock type, named only through `Deref`).
    storage: Box<dyn std::ops::Deref<Target = candle_core::Storage> + 'a>,
    range: (usize, usize),
}

impl<'a> CpuF32<'a> {
    /// `None` unless `t` is f32, on the CPU and contiguous.
    pub fn of(t: &'a Tensor) -> Option<Self> {
        let (storage, layout) = t.storage_and_layout();
        let range = layout.contiguous_offsets()?;
        match &*storage {
            candle_core::Storage::Cpu(cpu) if cpu.as_slice::<f32>().is_ok() => Some(Self { storage: Box::new(storage), range }),
            _ => None,
        }
    }

    pub fn values(&self) -> &[f32] {
        match &**self.storage {
            candle_core::Storage::Cpu(cpu) => &cpu.as_slice::<f32>().expect("checked in `of`")[self.range.0..self.range.1],
            _ => unreachable!("checked in `of`"),
        }
    }
}

/// `f(a[i], b[i])` for every element, on every core, into fresh memory.
pub fn zip_map(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Sync) -> Vec<f32> {
    assert_eq!(a.len(), b.len(), "zip_map: slices of different lengths");
    crate::alloc::fill_fresh(a.len(), 1 << 14, |start, out| {
        for ((o, &x), &y) in out.iter_mut().zip(&a[start..]).zip(&b[start..]) {
            o.write(f(x, y));
        }
    })
}
