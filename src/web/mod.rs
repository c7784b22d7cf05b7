//! The wasm-bindgen surface the page calls: thin wrappers over the library, errors as JS errors.

pub mod console;
pub mod segment;

use wasm_bindgen::prelude::*;

use crate::backend;
use crate::heads::labels_from_class_logits;
use crate::nii::{ReadOptions, read_nifti};
use crate::pipeline::{PreparedVolume, label_slice, put_label_slice};
use crate::preprocess::percentiles_nonzero;
use crate::volume::Volume;
use burn::tensor::Device;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    console::init();
}

/// A volume the page has loaded, with the axis it is browsed along, and its label volume once
/// segmented.
#[wasm_bindgen]
pub struct WebVolume {
    volume: Volume,
    axis: usize,
    /// Encoder inputs, made on the first `encoderInput`.
    prepared: Option<PreparedVolume>,
    /// Empty until something is segmented; then one class code per voxel.
    labels: Vec<u8>,
    /// RGB per class code (background's is never drawn).
    palette: Vec<[u8; 3]>,
}

#[wasm_bindgen]
impl WebVolume {
    /// Decodes `.nii` / `.nii.gz` bytes; throws with a readable message on a bad file.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], frame: usize) -> Result<WebVolume, JsError> {
        let volume = read_nifti(
            bytes,
            &ReadOptions {
                frame,
                ..Default::default()
            },
        )?;
        let axis = volume.slice_axis();
        Ok(Self {
            volume,
            axis,
            prepared: None,
            labels: Vec::new(),
            palette: Vec::new(),
        })
    }

    /// Slice `index` as the encoder's `[3, size, size]` input.
    #[wasm_bindgen(js_name = encoderInput)]
    pub fn encoder_input(&mut self, index: usize, size: usize) -> Result<Vec<f32>, JsError> {
        if index >= self.slice_count() {
            return Err(JsError::new("no such slice"));
        }
        let volume = &self.volume;
        let prepared = self
            .prepared
            .get_or_insert_with(|| PreparedVolume::new(volume, size));
        Ok(prepared.inputs[index].clone())
    }

    /// Stores slice `index`'s labels from a head's class logits `[classes, S, S]`.
    #[wasm_bindgen(js_name = setLabelsFromLogits)]
    pub fn set_labels_from_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
    ) -> Result<(), JsError> {
        let p = self
            .prepared
            .as_ref()
            .ok_or_else(|| JsError::new("encoderInput first"))?;
        let grid = p.letterbox.size * p.letterbox.size;
        if classes == 0 || logits.len() != classes * grid {
            return Err(JsError::new("logits of the wrong size"));
        }
        let plane = labels_from_class_logits(logits, classes, &p.letterbox);
        if self.labels.len() != self.volume.data.len() {
            self.labels = vec![0; self.volume.data.len()];
        }
        put_label_slice(&mut self.labels, p.dims, p.axis, index, &plane);
        Ok(())
    }

    /// Class colours as `#rrggbb`, background first.
    #[wasm_bindgen(js_name = setPalette)]
    pub fn set_palette(&mut self, colors: Vec<String>) {
        self.palette = colors
            .iter()
            .map(|c| {
                let v = u32::from_str_radix(c.trim_start_matches('#'), 16).unwrap_or(0xffffff);
                [(v >> 16) as u8, (v >> 8) as u8, v as u8]
            })
            .collect();
    }

    #[wasm_bindgen(js_name = hasLabels)]
    pub fn has_labels(&self) -> bool {
        !self.labels.is_empty()
    }

    /// The label volume as `.nii.gz` bytes in the image's geometry.
    #[wasm_bindgen(js_name = exportLabels)]
    pub fn export_labels(&self) -> Result<Vec<u8>, JsError> {
        if self.labels.is_empty() {
            return Err(JsError::new("nothing segmented yet"));
        }
        Ok(crate::nii::write::write_labels(
            &self.labels,
            self.volume.dims,
            &self.volume.header,
        )?)
    }

    /// Per class code 0..classes, its volume in mL (voxel count times the voxel volume).
    #[wasm_bindgen(js_name = classVolumesMl)]
    pub fn class_volumes_ml(&self, classes: usize) -> Vec<f64> {
        let [x, y, z] = self.volume.spacing();
        let voxel_ml = (x * y * z).abs() / 1000.0;
        let mut counts = vec![0usize; classes];
        for &l in &self.labels {
            if let Some(c) = counts.get_mut(l as usize) {
                *c += 1;
            }
        }
        counts.iter().map(|&n| n as f64 * voxel_ml).collect()
    }

    pub fn summary(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(&self.volume.summary())?)
    }

    #[wasm_bindgen(js_name = summaryText)]
    pub fn summary_text(&self) -> String {
        self.volume.summary().to_string()
    }

    #[wasm_bindgen(js_name = sliceCount)]
    pub fn slice_count(&self) -> usize {
        self.volume.slice_count(self.axis)
    }

    /// Display width: the slice's first in-plane axis runs left to right.
    pub fn width(&self) -> usize {
        self.volume.dims[Volume::plane_axes(self.axis).0]
    }

    pub fn height(&self) -> usize {
        self.volume.dims[Volume::plane_axes(self.axis).1]
    }

    /// `[level, width]` covering the 0.5-99.5 percentiles of non-zero voxels.
    #[wasm_bindgen(js_name = defaultWindow)]
    pub fn default_window(&self) -> Vec<f32> {
        let (lo, hi) = percentiles_nonzero(&self.volume.data, 0.5, 99.5).unwrap_or((0.0, 1.0));
        vec![(lo + hi) / 2.0, (hi - lo).max(f32::EPSILON)]
    }

    /// RGBA pixels of slice `index` under a window, rows top to bottom with the second in-plane
    /// axis pointing up (anterior up for an axial RAS volume), labels blended in at `opacity`.
    #[wasm_bindgen(js_name = renderSlice)]
    pub fn render_slice(&self, index: usize, level: f32, window: f32, opacity: f32) -> Vec<u8> {
        let index = index.min(self.slice_count().saturating_sub(1));
        let slice = self.volume.slice(self.axis, index);
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            label_slice(&self.labels, self.volume.dims, self.axis, index)
        };
        let opacity = opacity.clamp(0.0, 1.0);
        let (w, h) = (self.width(), self.height());
        let lo = level - window / 2.0;
        let window = window.max(f32::EPSILON);
        let mut rgba = vec![255u8; w * h * 4];
        for y in 0..h {
            for x in 0..w {
                // slice rows are the first in-plane axis: transpose and flip for display
                let i = x * h + (h - 1 - y);
                let g = (((slice.data[i] - lo) / window).clamp(0.0, 1.0) * 255.0).round() as u8;
                let p = (y * w + x) * 4;
                rgba[p..p + 3].fill(g);
                let class = labels.get(i).copied().unwrap_or(0) as usize;
                if let (true, Some(c)) = (class > 0, self.palette.get(class)) {
                    for (o, &c) in rgba[p..p + 3].iter_mut().zip(c) {
                        *o = (f32::from(*o) * (1.0 - opacity) + f32::from(c) * opacity).round()
                            as u8;
                    }
                }
            }
        }
        rgba
    }

    /// The label under display pixel (x, y) of slice `index`, once segmented.
    #[wasm_bindgen(js_name = labelAt)]
    pub fn label_at(&self, index: usize, x: usize, y: usize) -> Option<u8> {
        let v = self.voxel(index, x, y)?;
        self.labels.get(v).copied()
    }

    /// The voxel value under display pixel (x, y) of slice `index`.
    #[wasm_bindgen(js_name = valueAt)]
    pub fn value_at(&self, index: usize, x: usize, y: usize) -> Option<f32> {
        self.voxel(index, x, y).map(|v| self.volume.data[v])
    }
}

impl WebVolume {
    /// The voxel under display pixel (x, y) of slice `index`.
    fn voxel(&self, index: usize, x: usize, y: usize) -> Option<usize> {
        let (r, c) = Volume::plane_axes(self.axis);
        let (w, h) = (self.width(), self.height());
        if x >= w || y >= h || index >= self.slice_count() {
            return None;
        }
        let mut ijk = [0; 3];
        ijk[self.axis] = index;
        ijk[r] = x;
        ijk[c] = h - 1 - y;
        Some(self.volume.index(ijk[0], ijk[1], ijk[2]))
    }
}

thread_local! {
    /// The WebGPU device once asked for: burn registers one runtime per device, so a second
    /// initialisation fails and the first answer has to be kept.
    static WEBGPU: std::cell::RefCell<Option<Option<Device>>> = const { std::cell::RefCell::new(None) };
}

/// Starts WebGPU if the browser offers an adapter; `None` (and the reason logged) otherwise.
pub async fn webgpu_device() -> Option<Device> {
    if let Some(known) = WEBGPU.with_borrow(|d| d.clone()) {
        return known;
    }
    let device = match Device::wgpu_options().init_async().await {
        Ok(device) => Some(device),
        Err(e) => {
            log::warn!("WebGPU unavailable: {e}");
            None
        }
    };
    WEBGPU.with_borrow_mut(|d| d.get_or_insert(device).clone())
}

/// What the browser says of its WebGPU adapter ("google swiftshader ..." headless without a GPU),
/// read through JS since web-sys keeps the WebGPU bindings behind an unstable flag.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Option<String> {
    use js_sys::{Promise, Reflect};
    use wasm_bindgen_futures::JsFuture;
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).ok();
    let gpu = get(&web_sys::window()?.navigator().into(), "gpu")?;
    let request: js_sys::Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let promise: Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info")?;
    let fields: Vec<String> = ["vendor", "architecture", "description"]
        .iter()
        .filter_map(|k| get(&info, k)?.as_string())
        .filter(|s| !s.is_empty())
        .collect();
    Some(fields.join(" "))
}

/// Runs the conv + matmul probe on the CPU backend and, when present, on WebGPU, and says which
/// ran and how far apart they are: the page shows it so a user can see their GPU is trusted.
#[wasm_bindgen(js_name = backendReport)]
pub async fn backend_report() -> Result<String, JsError> {
    let cpu = read(backend::probe(&backend::cpu())).await?;
    let Some(gpu) = webgpu_device().await else {
        return Ok("CPU (flex); WebGPU: no adapter".into());
    };
    let gpu = read(backend::probe(&gpu)).await?;
    let err = backend::relative_error(&gpu, &cpu);
    let adapter = adapter_info().await.unwrap_or_default();
    Ok(if err < 1e-4 && console::errors_logged() == 0 {
        format!("WebGPU {adapter} (matches CPU, rel. error {err:.1e})")
    } else {
        format!("CPU (flex); WebGPU disagrees with the CPU (rel. error {err:.1e}), not used")
    })
}

/// Reads a tensor back; the only way on WebGPU, where a synchronous read panics.
pub async fn read<const D: usize>(t: burn::tensor::Tensor<D>) -> Result<Vec<f32>, JsError> {
    let data = t
        .into_data_async()
        .await
        .map_err(|e| JsError::new(&format!("{e:?}")))?;
    data.try_to_vec::<f32>()
        .map_err(|e| JsError::new(&format!("{e:?}")))
}
