//! The Snake activation, `x + sin²(αx) / β`, on the CPU in f32, with `sin²` as a polynomial.
//!
//! libm's `sinf` is a call per element and was 8 % of a VAE encode; the polynomial is plain
//! arithmetic the compiler can inline and vectorise. Range reduction is Cody-Waite's, by π/2 split
//! in three parts (the first with 8 significant bits, so `j·P1` is exact for |j| < 2¹⁶), then
//! Cephes' minimax polynomials for sin and cos on [−π/4, π/4]. `sin²` needs no sign: an even
//! quadrant gives `sin²(r)`, an odd one `cos²(r)`. The error stays within 2·10⁻⁷ of sin² over
//! |αx| ≤ 10⁴ (tested); beyond that libm takes over.

/// π/2 in three parts: `P1 + P2 + P3` carries π/2 to about 2⁻⁵⁰.
const P1: f32 = 1.570_312_5;
const P2: f32 = 4.837_513e-4;
const P3: f32 = 7.549_79e-8;
/// Adding and removing 1.5·2²³ rounds an f32 below 2²² to the nearest integer, with no libm call.
const ROUNDER: f32 = 12_582_912.0;
/// Where the reduction stops being exact enough.
const REDUCED_LIMIT: f32 = 1.0e4;

/// `sin²(y)`.
#[inline]
pub fn sin_squared(y: f32) -> f32 {
    if y.abs() > REDUCED_LIMIT {
        let s = y.sin();
        return s * s;
    }
    let j = (y * std::f32::consts::FRAC_2_PI + ROUNDER) - ROUNDER;
    let r = ((y - j * P1) - j * P2) - j * P3;
    let r2 = r * r;
    let sin = r + r * r2 * (-1.666_665_5e-1 + r2 * (8.332_161e-3 + r2 * -1.951_529_6e-4));
    let cos = 1.0 - 0.5 * r2 + r2 * r2 * (4.166_664_6e-2 + r2 * (-1.388_731_6e-3 + r2 * 2.443_315_7e-5));
    if (j as i32) & 1 == 0 {
        sin * sin
    } else {
        cos * cos
    }
}

/// Snake: `v + sin²(α·v) / β`, given `1/β`.
#[inline]
pub fn snake(v: f32, alpha: f32, inv_beta: f32) -> f32 {
    v + inv_beta * sin_squared(alpha * v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sin_squared_matches_f64_across_the_range() {
        let mut worst = 0f64;
        let mut y = -20_000.0f64;
        while y <= 20_000.0 {
            let got = sin_squared(y as f32) as f64;
            let want = (y as f32 as f64).sin().powi(2);
            worst = worst.max((got - want).abs());
            y += 0.0137;
        }
        assert!(worst < 2e-7, "worst absolute error {worst}");
        // Quadrant edges and zero.
        for (y, want) in [(0.0f32, 0.0f32), (std::f32::consts::FRAC_PI_2, 1.0), (std::f32::consts::PI, 0.0)] {
            assert!((sin_squared(y) - want).abs() < 1e-6, "{y}");
        }
        assert_eq!(snake(0.5, 0.0, 3.0), 0.5);
    }
}
