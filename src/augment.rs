//! Image augmentation on the host, the same natively and in wasm: random flips, rotations,
//! scalings and shifts with an optional elastic deformation (one warp, bilinear for images,
//! nearest for labels), intensity and gamma changes and Gaussian noise. Used for the augmented
//! views in the embedding cache, for the UNet baseline and for SimCLR's views. Cached embeddings
//! cannot be augmented, so views are encoded once.

/// A small seeded generator (xorshift64*), the same on every platform.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [lo, hi).
    pub fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        let u = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        lo + (hi - lo) * u
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u = self.uniform(f32::EPSILON, 1.0);
        let v = self.uniform(0.0, 1.0);
        (-2.0 * u.ln()).sqrt() * (std::f32::consts::TAU * v).cos()
    }
}

/// Control points per side of the elastic deformation's grid: displacements drawn there and
/// interpolated bilinearly between them give a smooth random field.
const ELASTIC_GRID: usize = 5;

/// Which family of views an augmented cache entry holds (its cache key names it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(
    all(feature = "cli", not(target_arch = "wasm32")),
    derive(clap::ValueEnum)
)]
pub enum Family {
    /// Flips, +-15 degrees, 0.9-1.1 scale, small shifts, contrast, brightness and gamma.
    Mild,
    /// The paper's: any rotation, 0.5-1.9 scale, elastic deformation, brightness, gamma, noise.
    #[default]
    Paper,
}

impl Family {
    /// The family of the page's Teach views: from one patient the paper's rotations and
    /// rescalings cost the linear head more than they teach it; this one gains (docs/page.md).
    pub const TEACH: Self = Self::Mild;
    /// How many views of each labelled slice Teach draws: two gain 0.03 from one patient, four
    /// no more (docs/page.md), and each is one more encoder pass.
    pub const TEACH_VIEWS: usize = 2;

    pub fn draw(self, rng: &mut Rng) -> Augment {
        match self {
            Self::Mild => Augment::random(rng),
            Self::Paper => Augment::paper(rng),
        }
    }

    /// The `views` draws of slice `z` under `seed`: training natively and the page's Teach see
    /// the same views of a slice.
    pub fn slice_views(self, seed: u64, z: usize, views: usize) -> Vec<Augment> {
        let mut rng = Rng::new(seed ^ ((z as u64) << 20));
        (0..views).map(|_| self.draw(&mut rng)).collect()
    }

    /// Its part of a cache key: the mild family's is the one its entries always had.
    pub fn tag(self) -> &'static str {
        match self {
            Self::Mild => "aug",
            Self::Paper => "paper",
        }
    }
}

/// One draw of the augmentation parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Augment {
    pub flip: bool,
    /// Radians.
    pub angle: f32,
    /// > 1 zooms in.
    pub scale: f32,
    /// Shift of the centre, in output pixels.
    pub shift: [f32; 2],
    pub gamma: f32,
    pub gain: f32,
    pub bias: f32,
    /// Elastic displacement (output pixels, row and column) at the control points of an
    /// [`ELASTIC_GRID`]-square grid over the output; zero for none.
    pub elastic: [[f32; 2]; ELASTIC_GRID * ELASTIC_GRID],
    /// Standard deviation of the Gaussian noise added to the image, and its seed.
    pub noise: f32,
    pub noise_seed: u64,
}

impl Augment {
    pub const IDENTITY: Self = Self {
        flip: false,
        angle: 0.0,
        scale: 1.0,
        shift: [0.0, 0.0],
        gamma: 1.0,
        gain: 1.0,
        bias: 0.0,
        elastic: [[0.0; 2]; ELASTIC_GRID * ELASTIC_GRID],
        noise: 0.0,
        noise_seed: 0,
    };

    /// Mild changes that keep the anatomy recognisable: flips, +-15 degrees, 0.9-1.1 scale,
    /// +-10 px shifts, gamma 0.7-1.5, contrast 0.9-1.1 and brightness +-0.1.
    pub fn random(rng: &mut Rng) -> Self {
        Self {
            flip: rng.below(2) == 1,
            angle: rng.uniform(-15.0, 15.0).to_radians(),
            scale: rng.uniform(0.9, 1.1),
            shift: [rng.uniform(-10.0, 10.0), rng.uniform(-10.0, 10.0)],
            gamma: rng.uniform(0.7, 1.5),
            gain: rng.uniform(0.9, 1.1),
            bias: rng.uniform(-0.1, 0.1),
            ..Self::IDENTITY
        }
    }

    /// The paper's family (its reference code's online augmentation): mirroring, any rotation,
    /// scale 0.5-1.9, an elastic deformation (half the time, control points moved up to 8 px),
    /// brightness 0.75-1.25, gamma 0.7-1.5 and Gaussian noise (half the time, sigma up to 0.1).
    pub fn paper(rng: &mut Rng) -> Self {
        let mut a = Self {
            flip: rng.below(2) == 1,
            angle: rng.uniform(-180.0, 180.0).to_radians(),
            scale: rng.uniform(0.5, 1.9),
            gamma: rng.uniform(0.7, 1.5),
            gain: rng.uniform(0.75, 1.25),
            ..Self::IDENTITY
        };
        if rng.below(2) == 1 {
            for d in &mut a.elastic {
                *d = [rng.uniform(-8.0, 8.0), rng.uniform(-8.0, 8.0)];
            }
        }
        if rng.below(2) == 1 {
            a.noise = rng.uniform(0.0, 0.1);
            a.noise_seed = rng.next_u64();
        }
        a
    }

    /// The elastic displacement at output pixel (y, x) of an `out`-square output.
    fn displacement(&self, y: usize, x: usize, out: usize) -> [f32; 2] {
        let cells = (ELASTIC_GRID - 1) as f32;
        let at = |v: usize| v as f32 / (out.max(2) - 1) as f32 * cells;
        let (gy, gx) = (at(y), at(x));
        let (y0, x0) = (
            (gy as usize).min(ELASTIC_GRID - 2),
            (gx as usize).min(ELASTIC_GRID - 2),
        );
        let (fy, fx) = (gy - y0 as f32, gx - x0 as f32);
        let p = |r: usize, c: usize| self.elastic[r * ELASTIC_GRID + c];
        let mut d = [0.0; 2];
        for (k, v) in d.iter_mut().enumerate() {
            *v = p(y0, x0)[k] * (1.0 - fy) * (1.0 - fx)
                + p(y0, x0 + 1)[k] * (1.0 - fy) * fx
                + p(y0 + 1, x0)[k] * fy * (1.0 - fx)
                + p(y0 + 1, x0 + 1)[k] * fy * fx;
        }
        d
    }

    /// SimCLR's stronger views: a random crop of 30-100% of the area resized to the output, plus
    /// the mild changes.
    pub fn crop(rng: &mut Rng) -> Self {
        let mut a = Self::random(rng);
        a.scale = 1.0 / rng.uniform(0.3, 1.0).sqrt();
        a
    }

    /// Source position (row, column) of output pixel (y, x), both grids centred.
    fn source(&self, y: usize, x: usize, out: usize, src: usize) -> (f32, f32) {
        let c_out = (out as f32 - 1.0) / 2.0;
        let c_src = (src as f32 - 1.0) / 2.0;
        let ratio = src as f32 / out as f32 / self.scale;
        let [ey, ex] = self.displacement(y, x, out);
        let mut dy = (y as f32 + ey - c_out - self.shift[0]) * ratio;
        let mut dx = (x as f32 + ex - c_out - self.shift[1]) * ratio;
        if self.flip {
            dx = -dx;
        }
        let (s, c) = self.angle.sin_cos();
        (dy, dx) = (c * dy - s * dx, s * dy + c * dx);
        (c_src + dy, c_src + dx)
    }

    /// A square [0, 1] image `src` x `src` -> `out` x `out`: warped (bilinear, zero outside),
    /// then contrast, brightness and gamma, clamped to [0, 1], then the noise (clamped again).
    pub fn image(&self, img: &[f32], src: usize, out: usize) -> Vec<f32> {
        let at = |r: isize, c: isize| -> f32 {
            if r < 0 || c < 0 || r >= src as isize || c >= src as isize {
                0.0
            } else {
                img[r as usize * src + c as usize]
            }
        };
        let mut v = Vec::with_capacity(out * out);
        for y in 0..out {
            for x in 0..out {
                let (r, c) = self.source(y, x, out, src);
                let (r0, c0) = (r.floor(), c.floor());
                let (fr, fc) = (r - r0, c - c0);
                let (r0, c0) = (r0 as isize, c0 as isize);
                let p = at(r0, c0) * (1.0 - fr) * (1.0 - fc)
                    + at(r0, c0 + 1) * (1.0 - fr) * fc
                    + at(r0 + 1, c0) * fr * (1.0 - fc)
                    + at(r0 + 1, c0 + 1) * fr * fc;
                let p = (p * self.gain + self.bias).clamp(0.0, 1.0);
                v.push(p.powf(self.gamma));
            }
        }
        if self.noise > 0.0 {
            let mut rng = Rng::new(self.noise_seed);
            for p in &mut v {
                *p = (*p + self.noise * rng.normal()).clamp(0.0, 1.0);
            }
        }
        v
    }

    /// Labels warped the same way (nearest neighbour, background outside).
    pub fn labels(&self, labels: &[u8], src: usize, out: usize) -> Vec<u8> {
        let mut v = Vec::with_capacity(out * out);
        for y in 0..out {
            for x in 0..out {
                let (r, c) = self.source(y, x, out, src);
                let (r, c) = (r.round(), c.round());
                let inside = r >= 0.0 && c >= 0.0 && r < src as f32 && c < src as f32;
                v.push(if inside {
                    labels[r as usize * src + c as usize]
                } else {
                    0
                });
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_keeps_images_and_labels() {
        let img: Vec<f32> = (0..64).map(|i| i as f32 / 63.0).collect();
        let labels: Vec<u8> = (0..64).map(|i| (i % 3) as u8).collect();
        let a = Augment::IDENTITY;
        let out = a.image(&img, 8, 8);
        assert!(out.iter().zip(&img).all(|(a, b)| (a - b).abs() < 1e-6));
        assert_eq!(a.labels(&labels, 8, 8), labels);
    }

    #[test]
    fn flip_mirrors_columns_and_labels_follow_the_image() {
        let img: Vec<f32> = (0..16).map(|i| (i % 4) as f32 / 3.0).collect();
        let a = Augment {
            flip: true,
            ..Augment::IDENTITY
        };
        let out = a.image(&img, 4, 4);
        assert!((out[0] - 1.0).abs() < 1e-6 && out[3].abs() < 1e-6);
        // Labels made from the image move with it under any warp.
        let mut rng = Rng::new(3);
        let a = Augment {
            gamma: 1.0,
            gain: 1.0,
            bias: 0.0,
            ..Augment::random(&mut rng)
        };
        let n = 32;
        let img: Vec<f32> = (0..n * n)
            .map(|i| f32::from(((i / n) as i32 - 12).abs() < 6 && ((i % n) as i32 - 20).abs() < 6))
            .collect();
        let labels: Vec<u8> = img.iter().map(|&v| v as u8).collect();
        let (wi, wl) = (a.image(&img, n, n), a.labels(&labels, n, n));
        let agree = wi
            .iter()
            .zip(&wl)
            .filter(|(i, l)| (**i > 0.5) == (**l == 1))
            .count();
        assert!(agree as f32 > 0.97 * (n * n) as f32, "{agree}");
        assert!(wl.contains(&1));
    }

    #[test]
    fn the_papers_views_deform_elastically_and_add_noise_with_labels_following() {
        // Find a draw with both, as half of them have each.
        let mut rng = Rng::new(11);
        let a = (0..64)
            .map(|_| Augment::paper(&mut rng))
            .find(|a| a.noise > 0.02 && a.elastic[0] != [0.0; 2])
            .unwrap();
        assert!((0.5..1.9).contains(&a.scale) && (0.75..1.25).contains(&a.gain));
        // The elastic field moves pixels that the affine part alone would not.
        let affine = Augment {
            elastic: Augment::IDENTITY.elastic,
            noise: 0.0,
            ..a
        };
        let n = 48;
        let labels: Vec<u8> = (0..n * n)
            .map(|i| u8::from(((i / n) as i32 - 24).abs() < 10 && ((i % n) as i32 - 24).abs() < 10))
            .collect();
        assert_ne!(a.labels(&labels, n, n), affine.labels(&labels, n, n));
        // Noise: the image changes, stays in [0, 1], and is the same for the same draw.
        let img: Vec<f32> = labels.iter().map(|&l| f32::from(l) * 0.5 + 0.25).collect();
        let quiet = Augment { noise: 0.0, ..a };
        let (noisy, clean) = (a.image(&img, n, n), quiet.image(&img, n, n));
        assert!(noisy.iter().all(|v| (0.0..=1.0).contains(v)));
        assert!(noisy.iter().zip(&clean).filter(|(x, y)| x != y).count() > n * n / 2);
        assert_eq!(noisy, a.image(&img, n, n));
    }

    #[test]
    fn draws_are_seeded() {
        let a = Augment::random(&mut Rng::new(1));
        assert_eq!(a, Augment::random(&mut Rng::new(1)));
        assert_ne!(a, Augment::random(&mut Rng::new(2)));
    }
}
