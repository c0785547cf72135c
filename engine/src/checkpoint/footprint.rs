//! What a model's weights take resident, for every way of loading them: counted once, by the
//! validation pass over the model's constructor, then priced for any [`LoadAs`] by arithmetic (so
//! a front end can show the memory of each precision without loading anything).

use candle_core::DType;

use super::LoadAs;

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Footprint {
    /// Each Linear weight: its stored dtype (safetensors' name), inputs and outputs.
    linears: Vec<(String, usize, usize)>,
    /// Elements of 16-bit embedding tables (kept at their width on the CPU in f32).
    table_elements: u64,
    /// Every other element (converted to the compute dtype).
    other_elements: u64,
}

impl Footprint {
    pub fn add_linear(&mut self, stored: &str, in_dim: usize, out_dim: usize) {
        self.linears.push((stored.to_string(), in_dim, out_dim));
    }

    pub fn add_table(&mut self, elements: usize) {
        self.table_elements += elements as u64;
    }

    pub fn add_other(&mut self, elements: usize) {
        self.other_elements += elements as u64;
    }

    /// Both models' weights together.
    pub fn plus(mut self, other: &Footprint) -> Self {
        self.linears.extend(other.linears.iter().cloned());
        self.table_elements += other.table_elements;
        self.other_elements += other.other_elements;
        self
    }

    /// The bytes the weights take loaded as `how`. Only the CPU in f32 keeps Linear weights at
    /// the precision's width and tables at 16 bits; elsewhere everything takes the dtype's.
    pub fn bytes(&self, how: &LoadAs) -> u64 {
        if how.dtype != DType::F32 || !how.device.is_cpu() {
            let elements: u64 = self.linears.iter().map(|(_, i, o)| (i * o) as u64).sum::<u64>() + self.table_elements + self.other_elements;
            return elements * how.dtype.size_in_bytes() as u64;
        }
        let linears: u64 = self.linears.iter().map(|(stored, i, o)| how.precision.linear_bytes(stored, *i, *o)).sum();
        linears + 2 * self.table_elements + 4 * self.other_elements
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::precision::Precision;

    #[test]
    fn each_load_prices_what_it_keeps() {
        let mut f = Footprint::default();
        f.add_linear("BF16", 64, 128);
        f.add_table(1000);
        f.add_other(10);
        let cpu = |p| f.bytes(&LoadAs::cpu(p));
        assert_eq!(cpu(Precision::F32), 64 * 128 * 4 + 2000 + 40);
        assert_eq!(cpu(Precision::Bf16), 64 * 128 * 2 + 2000 + 40);
        assert_eq!(cpu(Precision::Q8), 64 * (128 + 8) + 2000 + 40);
        let bf16 = LoadAs { dtype: DType::BF16, ..LoadAs::cpu(Precision::Q4) };
        assert_eq!(f.bytes(&bf16), (64 * 128 + 1000 + 10) * 2);
        assert_eq!(f.clone().plus(&f).bytes(&LoadAs::cpu(Precision::F32)), 2 * cpu(Precision::F32));
    }
}
