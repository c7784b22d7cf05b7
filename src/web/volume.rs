//! A volume in the page: decoding, display along any of the three axes, and its label volume,
//! whether segmented, dropped as a file, drawn from boxes or painted.

use wasm_bindgen::prelude::*;

use crate::heads::labels_from_class_logits;
use crate::nii::{ReadOptions, read_nifti};
use crate::pipeline::{PreparedVolume, label_slice, put_label_slice};
use crate::preprocess::percentiles_nonzero;
use crate::volume::{Volume, plane_indices};

/// A loaded volume, the axis it is viewed along, and its label volume once it has one.
/// Segmentation, boxes and training work on the acquisition axis (`segAxis`), whatever the view.
#[wasm_bindgen]
pub struct WebVolume {
    volume: Volume,
    view_axis: usize,
    /// Encoder inputs, made on first use.
    prepared: Option<PreparedVolume>,
    /// Empty until labelled; then one class code per voxel.
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
        let view_axis = volume.slice_axis();
        Ok(Self {
            volume,
            view_axis,
            prepared: None,
            labels: Vec::new(),
            palette: Vec::new(),
        })
    }

    /// Whole numbers, few of them: this file is a label map rather than an image.
    #[wasm_bindgen(js_name = looksLikeLabels)]
    pub fn looks_like_labels(&self) -> bool {
        self.volume.looks_like_labels()
    }

    /// Same voxel grid (dimensions) as `other`: a label file can belong to it, or two frames of
    /// one heart.
    #[wasm_bindgen(js_name = sameGrid)]
    pub fn same_grid(&self, other: &WebVolume) -> bool {
        self.volume.dims == other.volume.dims
    }

    /// Takes `other`'s voxels (a label map on the same grid) as this volume's labels.
    #[wasm_bindgen(js_name = setLabelsFrom)]
    pub fn set_labels_from(&mut self, other: &WebVolume) -> Result<(), JsError> {
        if !self.same_grid(other) {
            return Err(JsError::new(&format!(
                "the label volume is {:?} voxels, the image {:?}",
                other.volume.dims, self.volume.dims
            )));
        }
        if !other.looks_like_labels() {
            return Err(JsError::new(
                "that file is not a label map (its values are not a few whole numbers)",
            ));
        }
        self.labels = other.volume.labels();
        Ok(())
    }

    /// The highest class code present (0 when unlabelled).
    #[wasm_bindgen(js_name = maxLabel)]
    pub fn max_label(&self) -> u8 {
        self.labels.iter().copied().max().unwrap_or(0)
    }

    #[wasm_bindgen(js_name = hasLabels)]
    pub fn has_labels(&self) -> bool {
        self.labels.iter().any(|&l| l > 0)
    }

    /// The acquisition axis: segmentation and training go slice by slice along it.
    #[wasm_bindgen(js_name = segAxis)]
    pub fn seg_axis(&self) -> usize {
        self.volume.slice_axis()
    }

    #[wasm_bindgen(js_name = segSliceCount)]
    pub fn seg_slice_count(&self) -> usize {
        self.volume.slice_count(self.seg_axis())
    }

    #[wasm_bindgen(js_name = viewAxis)]
    pub fn view_axis(&self) -> usize {
        self.view_axis
    }

    #[wasm_bindgen(js_name = setViewAxis)]
    pub fn set_view_axis(&mut self, axis: usize) {
        self.view_axis = axis.min(2);
    }

    /// Slice `index` along the acquisition axis as the encoder's `[3, size, size]` input.
    #[wasm_bindgen(js_name = encoderInput)]
    pub fn encoder_input(&mut self, index: usize, size: usize) -> Result<Vec<f32>, JsError> {
        if index >= self.seg_slice_count() {
            return Err(JsError::new("no such slice"));
        }
        Ok(self.prepared(size).inputs[index].clone())
    }

    /// Indices (acquisition axis) of the slices with any foreground label: what Teach trains on.
    #[wasm_bindgen(js_name = labelledSlices)]
    pub fn labelled_slices(&self) -> Vec<u32> {
        if self.labels.is_empty() {
            return Vec::new();
        }
        let (dims, axis) = (self.volume.dims, self.seg_axis());
        (0..self.seg_slice_count())
            .filter(|&z| plane_indices(dims, axis, z).any(|v| self.labels[v] > 0))
            .map(|z| z as u32)
            .collect()
    }

    /// Slice `index`'s labels on the encoder's `[size, size]` grid: a training target.
    #[wasm_bindgen(js_name = trainingLabels)]
    pub fn training_labels(&mut self, index: usize, size: usize) -> Result<Vec<u8>, JsError> {
        if self.labels.is_empty() || index >= self.seg_slice_count() {
            return Err(JsError::new("no labels on that slice"));
        }
        let plane = label_slice(&self.labels, self.volume.dims, self.seg_axis(), index);
        Ok(self.prepared(size).letterbox.labels(&plane))
    }

    /// Stores slice `index`'s labels from a head's class logits `[classes, S, S]`.
    #[wasm_bindgen(js_name = setLabelsFromLogits)]
    pub fn set_labels_from_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
    ) -> Result<(), JsError> {
        let size = grid_side(logits.len() / classes.max(1));
        let p = self.prepared(size);
        if classes == 0 || logits.len() != classes * size * size || index >= p.slice_count() {
            return Err(JsError::new("logits of the wrong size"));
        }
        let plane = labels_from_class_logits(logits, classes, &p.letterbox);
        let (dims, axis) = (p.dims, p.axis);
        put_label_slice(self.labels_mut(), dims, axis, index, &plane);
        Ok(())
    }

    /// A box drawn on the view (display pixels, corners in any order) as `[x0, y0, x1, y1]` on the
    /// encoder grid of slice `index`; the view must be along the acquisition axis.
    #[wasm_bindgen(js_name = encoderBox)]
    pub fn encoder_box(
        &mut self,
        size: usize,
        a: Vec<f32>,
        b: Vec<f32>,
    ) -> Result<Vec<f32>, JsError> {
        if self.view_axis != self.seg_axis() || a.len() != 2 || b.len() != 2 {
            return Err(JsError::new(
                "boxes are drawn in the acquisition plane: switch the view back to it",
            ));
        }
        let h = self.height() as f32;
        // Display x runs along the slice's rows (first in-plane axis), display y up its columns.
        let (x0, x1) = (a[0].min(b[0]), a[0].max(b[0]));
        let (y0, y1) = (a[1].min(b[1]), a[1].max(b[1]));
        let scale = self.prepared(size).letterbox.scale() as f32;
        Ok([h - 1.0 - y1, x0, h - 1.0 - y0, x1]
            .iter()
            .map(|v| v.max(0.0) * scale)
            .collect())
    }

    /// SAM's mask for a box (logits `[S, S]`) becomes `class` on slice `index`: the class's old
    /// pixels on that slice are cleared first, and pixels of the classes in `keep` stay theirs
    /// ("this mask minus these classes": myocardium is the epicardial mask minus the LV).
    #[wasm_bindgen(js_name = applyMask)]
    pub fn apply_mask(
        &mut self,
        index: usize,
        class: u8,
        logits: &[f32],
        keep: Vec<u8>,
    ) -> Result<usize, JsError> {
        let p = self.prepared(grid_side(logits.len()));
        if logits.len() != p.letterbox.size * p.letterbox.size || index >= p.slice_count() {
            return Err(JsError::new("a mask of the wrong size"));
        }
        let back = p.letterbox.scores_to_slice(logits);
        let (dims, axis) = (p.dims, p.axis);
        let labels = self.labels_mut();
        let mut plane = label_slice(labels, dims, axis, index);
        let mut set = 0;
        for (l, &s) in plane.iter_mut().zip(&back) {
            if *l == class {
                *l = 0;
            }
            if s > 0.0 && !keep.contains(l) {
                *l = class;
                set += 1;
            }
        }
        put_label_slice(labels, dims, axis, index, &plane);
        Ok(set)
    }

    /// Paints a disc of `radius` display pixels around (x, y) on view slice `index` with `class`
    /// (0 erases).
    pub fn paint(&mut self, index: usize, x: f32, y: f32, radius: f32, class: u8) {
        let (w, h) = (self.width(), self.height());
        let r = radius.max(0.5);
        let (lo_x, hi_x) = ((x - r).floor().max(0.0) as usize, (x + r).ceil() as usize);
        let (lo_y, hi_y) = ((y - r).floor().max(0.0) as usize, (y + r).ceil() as usize);
        for py in lo_y..=hi_y.min(h.saturating_sub(1)) {
            for px in lo_x..=hi_x.min(w.saturating_sub(1)) {
                let (dx, dy) = (px as f32 + 0.5 - x, py as f32 + 0.5 - y);
                if dx * dx + dy * dy <= r * r
                    && let Some(v) = self.voxel(index, px, py)
                {
                    self.labels_mut()[v] = class;
                }
            }
        }
    }

    /// View slice `index`'s labels, for undo.
    #[wasm_bindgen(js_name = sliceLabels)]
    pub fn slice_labels(&mut self, index: usize) -> Vec<u8> {
        let (dims, axis) = (self.volume.dims, self.view_axis);
        label_slice(self.labels_mut(), dims, axis, index.min(dims[axis] - 1))
    }

    #[wasm_bindgen(js_name = restoreSliceLabels)]
    pub fn restore_slice_labels(&mut self, index: usize, plane: &[u8]) {
        let (dims, axis) = (self.volume.dims, self.view_axis);
        if index < dims[axis] && plane.len() == dims.iter().product::<usize>() / dims[axis] {
            put_label_slice(self.labels_mut(), dims, axis, index, plane);
        }
    }

    /// The whole label volume (empty when unlabelled), for undoing a segmentation.
    #[wasm_bindgen(js_name = allLabels)]
    pub fn all_labels(&self) -> Vec<u8> {
        self.labels.clone()
    }

    /// Puts back what [`Self::all_labels`] returned.
    #[wasm_bindgen(js_name = restoreAllLabels)]
    pub fn restore_all_labels(&mut self, labels: Vec<u8>) {
        if labels.is_empty() || labels.len() == self.volume.data.len() {
            self.labels = labels;
        }
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

    /// Slices along the view axis.
    #[wasm_bindgen(js_name = sliceCount)]
    pub fn slice_count(&self) -> usize {
        self.volume.slice_count(self.view_axis)
    }

    /// Display width: the view's first in-plane axis runs left to right.
    pub fn width(&self) -> usize {
        self.plane_size(self.view_axis)[0]
    }

    pub fn height(&self) -> usize {
        self.plane_size(self.view_axis)[1]
    }

    /// `[level, width]` covering the 0.5-99.5 percentiles of non-zero voxels.
    #[wasm_bindgen(js_name = defaultWindow)]
    pub fn default_window(&self) -> Vec<f32> {
        let (lo, hi) = percentiles_nonzero(&self.volume.data, 0.5, 99.5).unwrap_or((0.0, 1.0));
        vec![(lo + hi) / 2.0, (hi - lo).max(f32::EPSILON)]
    }

    /// RGBA pixels of view slice `index` under a window: [`Self::render_along`] the view axis.
    #[wasm_bindgen(js_name = renderSlice)]
    pub fn render_slice(&self, index: usize, level: f32, window: f32, opacity: f32) -> Vec<u8> {
        self.render_along(self.view_axis, index, level, window, opacity)
    }

    /// RGBA pixels of slice `index` along `axis` under a window, rows top to bottom with the
    /// second in-plane axis pointing up (anterior up for an axial RAS volume), labels blended in
    /// at `opacity`. Its size is [`Self::plane_size`].
    #[wasm_bindgen(js_name = renderAlong)]
    pub fn render_along(
        &self,
        axis: usize,
        index: usize,
        level: f32,
        window: f32,
        opacity: f32,
    ) -> Vec<u8> {
        let axis = axis.min(2);
        let index = index.min(self.volume.dims[axis].saturating_sub(1));
        let slice = self.volume.slice(axis, index);
        let labels = if self.labels.is_empty() {
            Vec::new()
        } else {
            label_slice(&self.labels, self.volume.dims, axis, index)
        };
        let opacity = opacity.clamp(0.0, 1.0);
        let (w, h) = (slice.height, slice.width);
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

    /// `[width, height]` of a slice along `axis` on screen.
    #[wasm_bindgen(js_name = planeSize)]
    pub fn plane_size(&self, axis: usize) -> Vec<usize> {
        let (r, c) = Volume::plane_axes(axis.min(2));
        vec![self.volume.dims[r], self.volume.dims[c]]
    }

    /// Millimetres per screen pixel, `[x, y]`, of a slice along `axis`.
    #[wasm_bindgen(js_name = planeSpacing)]
    pub fn plane_spacing(&self, axis: usize) -> Vec<f64> {
        let (r, c) = Volume::plane_axes(axis.min(2));
        let s = self.volume.spacing();
        vec![s[r].abs(), s[c].abs()]
    }

    /// The voxel `[i, j, k]` under display pixel (x, y) of view slice `index`: where the other
    /// planes cross.
    #[wasm_bindgen(js_name = ijkAt)]
    pub fn ijk_at(&self, index: usize, x: usize, y: usize) -> Option<Vec<u32>> {
        let v = self.voxel(index, x, y)?;
        let [nx, ny, _] = self.volume.dims;
        Some(vec![
            (v % nx) as u32,
            ((v / nx) % ny) as u32,
            (v / (nx * ny)) as u32,
        ])
    }

    /// The label under display pixel (x, y) of view slice `index`, once labelled.
    #[wasm_bindgen(js_name = labelAt)]
    pub fn label_at(&self, index: usize, x: usize, y: usize) -> Option<u8> {
        let v = self.voxel(index, x, y)?;
        self.labels.get(v).copied()
    }

    /// The voxel value under display pixel (x, y) of view slice `index`.
    #[wasm_bindgen(js_name = valueAt)]
    pub fn value_at(&self, index: usize, x: usize, y: usize) -> Option<f32> {
        self.voxel(index, x, y).map(|v| self.volume.data[v])
    }
}

/// The side of a square grid of `n` values (the encoder grid of a logits plane).
fn grid_side(n: usize) -> usize {
    (n as f64).sqrt().round() as usize
}

impl WebVolume {
    /// The encoder inputs at `size`, made once (again if another size is asked for).
    fn prepared(&mut self, size: usize) -> &PreparedVolume {
        if self
            .prepared
            .as_ref()
            .is_some_and(|p| p.letterbox.size != size)
        {
            self.prepared = None;
        }
        let volume = &self.volume;
        self.prepared
            .get_or_insert_with(|| PreparedVolume::new(volume, size))
    }

    fn labels_mut(&mut self) -> &mut Vec<u8> {
        if self.labels.len() != self.volume.data.len() {
            self.labels = vec![0; self.volume.data.len()];
        }
        &mut self.labels
    }

    /// The voxel under display pixel (x, y) of view slice `index`.
    fn voxel(&self, index: usize, x: usize, y: usize) -> Option<usize> {
        let (r, c) = Volume::plane_axes(self.view_axis);
        let (w, h) = (self.width(), self.height());
        if x >= w || y >= h || index >= self.slice_count() {
            return None;
        }
        let mut ijk = [0; 3];
        ijk[self.view_axis] = index;
        ijk[r] = x;
        ijk[c] = h - 1 - y;
        Some(self.volume.index(ijk[0], ijk[1], ijk[2]))
    }
}
