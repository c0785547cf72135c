//! Seeded Gaussian noise, one generator per batch item.
//!
//! The generator is PyTorch's CPU one: Mersenne Twister (mt19937) seeded like
//! `torch.Generator().manual_seed(seed)`, turned into normals the way `torch.randn` fills a
//! float32 tensor of 16 or more values (24-bit uniforms, Box–Muller over blocks of 16, the last
//! block redrawn when the length is not a multiple of 16). So a seed gives the noise upstream
//! draws for it on the CPU, to the last bit or two of `ln`/`cos`/`sin` (GPU runs of upstream use
//! another generator, Philox, and cannot be matched). After the initial noise each item's
//! generator keeps going, so the SDE sampler's fresh noise is reproducible from the seed too.

use candle_core::{Device, Result, Tensor};

const STATE_WORDS: usize = 624;

/// The 32-bit Mersenne Twister, seeded as `std::mt19937` and `at::mt19937` are.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; STATE_WORDS],
    next: usize,
}

impl Mt19937 {
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; STATE_WORDS];
        state[0] = seed;
        for i in 1..STATE_WORDS {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Self { state, next: STATE_WORDS }
    }

    pub fn next_u32(&mut self) -> u32 {
        if self.next >= STATE_WORDS {
            self.twist();
        }
        let mut y = self.state[self.next];
        self.next += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..STATE_WORDS {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % STATE_WORDS] & LOWER);
            let mut v = self.state[(i + 397) % STATE_WORDS] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.next = 0;
    }

    /// A uniform float in [0, 1) from the low 24 bits, as torch's float `uniform_real`.
    fn uniform_f32(&mut self) -> f32 {
        (self.next_u32() & 0x00ff_ffff) as f32 / (1u32 << 24) as f32
    }

    /// `count` (≥ 16) standard normals, as `torch.randn(count)` draws them from this generator.
    pub fn normals(&mut self, count: usize) -> Vec<f32> {
        assert!(count >= 16, "torch draws fewer than 16 normals another way; noise here is always longer");
        let mut data: Vec<f32> = (0..count).map(|_| self.uniform_f32()).collect();
        for block in data.chunks_exact_mut(16) {
            box_muller_16(block);
        }
        if !count.is_multiple_of(16) {
            // torch redraws the whole last block of 16 over the tail.
            let tail = &mut data[count - 16..];
            for v in tail.iter_mut() {
                *v = self.uniform_f32();
            }
            box_muller_16(tail);
        }
        data
    }
}

/// Box–Muller over a block of 16 uniforms: pairs (j, j + 8) become two normals.
fn box_muller_16(block: &mut [f32]) {
    for j in 0..8 {
        let u1 = 1.0 - block[j]; // (0, 1] so the log is finite
        let u2 = block[j + 8];
        let radius = (-2.0 * u1.ln()).sqrt();
        let theta = (2.0 * std::f64::consts::PI * u2 as f64) as f32;
        block[j] = radius * theta.cos();
        block[j + 8] = radius * theta.sin();
    }
}

/// One generator per batch item, seeded with the item's seed.
pub struct SeededNoise {
    generators: Vec<Mt19937>,
}

impl SeededNoise {
    pub fn new(seeds: &[u32]) -> Self {
        Self { generators: seeds.iter().map(|&s| Mt19937::new(s)).collect() }
    }

    pub fn batch_size(&self) -> usize {
        self.generators.len()
    }

    /// The next `[batch, frames, channels]` draw: item i's values come from item i's generator,
    /// as upstream's `prepare_noise` draws `randn(1, frames, channels)` per seed.
    pub fn draw(&mut self, frames: usize, channels: usize, device: &Device) -> Result<Tensor> {
        let batch = self.generators.len();
        let mut values = Vec::with_capacity(batch * frames * channels);
        for generator in &mut self.generators {
            values.extend(generator.normals(frames * channels));
        }
        Tensor::from_vec(values, (batch, frames, channels), device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mersenne_twister_matches_the_reference_sequence() {
        // The 10000th output of mt19937 seeded with 5489 is 4123659995 (C++ [rand.predef]).
        let mut mt = Mt19937::new(5489);
        let v = (0..10_000).map(|_| mt.next_u32()).last().unwrap();
        assert_eq!(v, 4_123_659_995);
    }

    #[test]
    fn normals_look_standard_and_items_differ() {
        let mut noise = SeededNoise::new(&[1, 2]);
        let x = noise.draw(500, 64, &Device::Cpu).unwrap();
        let v = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let mean = v.iter().sum::<f32>() / v.len() as f32;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / v.len() as f32;
        assert!(mean.abs() < 0.02 && (var - 1.0).abs() < 0.03, "mean {mean} var {var}");
        let a = x.get(0).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let b = x.get(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_ne!(a, b);
        // The same seed gives the same values.
        assert_eq!(SeededNoise::new(&[2]).draw(500, 64, &Device::Cpu).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), b);
    }
}
