//! A volume in the page: [`LabelledVolume`] behind wasm-bindgen, its errors as JS errors.

use wasm_bindgen::prelude::*;

use crate::augment::{Augment, Family};
use crate::labelled::LabelledVolume;
use crate::nii::{ReadOptions, read_nifti};
use crate::zoom::{MAX_SCALE, Zoom};

#[wasm_bindgen]
pub struct WebVolume(LabelledVolume);

/// Segment's second look at small structures ([`Zoom`]).
#[wasm_bindgen]
pub struct WebZoom(Zoom);

#[wasm_bindgen]
impl WebZoom {
    /// A zoom by `scale` (above 1, at most [`MAX_SCALE`]) with the structures' centre shifted by
    /// (`shift_y`, `shift_x`) on the `size` grid; Segment makes its own with `zoomPlan`.
    #[wasm_bindgen(constructor)]
    pub fn new(scale: f32, shift_y: f32, shift_x: f32, size: usize) -> Result<WebZoom, JsError> {
        let finite = shift_y.is_finite() && shift_x.is_finite();
        if !(scale > 1.0 && scale <= MAX_SCALE && finite && size > 0) {
            return Err(JsError::new(
                "a zoom is a factor in (1, 3], a finite shift and a size",
            ));
        }
        Ok(Self(Zoom {
            scale,
            shift: [shift_y, shift_x],
            size,
        }))
    }

    #[wasm_bindgen(getter)]
    pub fn scale(&self) -> f32 {
        self.0.scale
    }

    /// Names the zoom in the embedding cache's keys.
    pub fn tag(&self) -> String {
        format!(
            "zoom{:.3}:{:.1}:{:.1}",
            self.0.scale, self.0.shift[0], self.0.shift[1]
        )
    }
}

#[wasm_bindgen]
impl WebVolume {
    /// Decodes `.nii` / `.nii.gz` bytes; throws with a readable message on a bad file.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], frame: usize) -> Result<WebVolume, JsError> {
        let options = ReadOptions {
            frame,
            ..Default::default()
        };
        Ok(Self(LabelledVolume::new(read_nifti(bytes, &options)?)))
    }

    #[wasm_bindgen(js_name = looksLikeLabels)]
    pub fn looks_like_labels(&self) -> bool {
        self.0.volume.looks_like_labels()
    }

    #[wasm_bindgen(js_name = sameGrid)]
    pub fn same_grid(&self, other: &WebVolume) -> bool {
        self.0.same_grid(&other.0.volume)
    }

    #[wasm_bindgen(js_name = setLabelsFrom)]
    pub fn set_labels_from(&mut self, other: &WebVolume) -> Result<(), JsError> {
        Ok(self.0.set_labels_from(&other.0.volume)?)
    }

    #[wasm_bindgen(js_name = maxLabel)]
    pub fn max_label(&self) -> u8 {
        self.0.max_label()
    }

    #[wasm_bindgen(js_name = hasLabels)]
    pub fn has_labels(&self) -> bool {
        self.0.has_labels()
    }

    #[wasm_bindgen(js_name = segAxis)]
    pub fn seg_axis(&self) -> usize {
        self.0.seg_axis()
    }

    #[wasm_bindgen(js_name = segSliceCount)]
    pub fn seg_slice_count(&self) -> usize {
        self.0.seg_slice_count()
    }

    #[wasm_bindgen(js_name = viewAxis)]
    pub fn view_axis(&self) -> usize {
        self.0.view_axis()
    }

    #[wasm_bindgen(js_name = setViewAxis)]
    pub fn set_view_axis(&mut self, axis: usize) {
        self.0.set_view_axis(axis);
    }

    #[wasm_bindgen(js_name = encoderInput)]
    pub fn encoder_input(&mut self, index: usize, size: usize) -> Result<Vec<f32>, JsError> {
        Ok(self.0.encoder_input(index, size)?)
    }

    #[wasm_bindgen(js_name = labelledSlices)]
    pub fn labelled_slices(&self) -> Vec<u32> {
        self.0
            .labelled_slices()
            .into_iter()
            .map(|z| z as u32)
            .collect()
    }

    #[wasm_bindgen(js_name = trainingLabels)]
    pub fn training_labels(&mut self, index: usize, size: usize) -> Result<Vec<u8>, JsError> {
        Ok(self.0.training_labels(index, size)?)
    }

    /// Slice `index`'s `view`-th augmented view for Teach, as native training draws it from
    /// `seed` (`Family::TEACH`): the encoder input on the `size` grid.
    #[wasm_bindgen(js_name = viewInput)]
    pub fn view_input(
        &mut self,
        index: usize,
        size: usize,
        seed: u32,
        view: usize,
    ) -> Result<Vec<f32>, JsError> {
        Ok(self
            .0
            .view_input(index, size, &teach_view(seed, index, view))?)
    }

    /// The training labels of the same view as `viewInput`.
    #[wasm_bindgen(js_name = viewLabels)]
    pub fn view_labels(
        &mut self,
        index: usize,
        size: usize,
        seed: u32,
        view: usize,
    ) -> Result<Vec<u8>, JsError> {
        Ok(self
            .0
            .view_labels(index, size, &teach_view(seed, index, view))?)
    }

    #[wasm_bindgen(js_name = setLabelsFromLogits)]
    pub fn set_labels_from_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
    ) -> Result<(), JsError> {
        Ok(self.0.set_labels_from_logits(index, logits, classes)?)
    }

    /// The second look the labels call for on the encoder's `size` grid with a head trained on
    /// structures spanning `target` of it (the head's `extent`), if any.
    #[wasm_bindgen(js_name = zoomPlan)]
    pub fn zoom_plan(&mut self, size: usize, target: f32) -> Option<WebZoom> {
        self.0.zoom_plan(size, target).map(WebZoom)
    }

    /// How much of the encoder's `size` grid the labelled structures span, if any are labelled:
    /// Teach records the median over its volumes in the head.
    #[wasm_bindgen(js_name = labelSpan)]
    pub fn label_span(&mut self, size: usize) -> Option<f32> {
        self.0.label_span(size)
    }

    #[wasm_bindgen(js_name = zoomedInput)]
    pub fn zoomed_input(&mut self, index: usize, zoom: &WebZoom) -> Result<Vec<f32>, JsError> {
        Ok(self.0.zoomed_input(index, &zoom.0)?)
    }

    #[wasm_bindgen(js_name = setLabelsFromZoomedLogits)]
    pub fn set_labels_from_zoomed_logits(
        &mut self,
        index: usize,
        logits: &[f32],
        classes: usize,
        zoom: &WebZoom,
    ) -> Result<(), JsError> {
        Ok(self
            .0
            .set_labels_from_zoomed_logits(index, logits, classes, &zoom.0)?)
    }

    /// The label volume's dimensions, x fastest (`keepLargestPieces` takes them).
    #[wasm_bindgen(js_name = labelDims)]
    pub fn label_dims(&self) -> Vec<u32> {
        self.0.dims().iter().map(|&d| d as u32).collect()
    }

    #[wasm_bindgen(js_name = encoderBox)]
    pub fn encoder_box(
        &mut self,
        size: usize,
        a: Vec<f32>,
        b: Vec<f32>,
    ) -> Result<Vec<f32>, JsError> {
        let corner =
            |v: Vec<f32>| <[f32; 2]>::try_from(v).map_err(|_| JsError::new("a corner is [x, y]"));
        Ok(self.0.encoder_box(size, corner(a)?, corner(b)?)?.to_vec())
    }

    #[wasm_bindgen(js_name = applyMask)]
    pub fn apply_mask(
        &mut self,
        index: usize,
        class: u8,
        logits: &[f32],
        keep: Vec<u8>,
    ) -> Result<usize, JsError> {
        Ok(self.0.apply_mask(index, class, logits, &keep)?)
    }

    pub fn paint(&mut self, index: usize, x: f32, y: f32, radius: f32, class: u8) {
        self.0.paint(index, x, y, radius, class);
    }

    #[wasm_bindgen(js_name = sliceLabels)]
    pub fn slice_labels(&mut self, index: usize) -> Vec<u8> {
        self.0.slice_labels(index)
    }

    #[wasm_bindgen(js_name = restoreSliceLabels)]
    pub fn restore_slice_labels(&mut self, index: usize, plane: &[u8]) {
        self.0.restore_slice_labels(index, plane);
    }

    #[wasm_bindgen(js_name = allLabels)]
    pub fn all_labels(&self) -> Vec<u8> {
        self.0.labels().to_vec()
    }

    #[wasm_bindgen(js_name = restoreAllLabels)]
    pub fn restore_all_labels(&mut self, labels: Vec<u8>) {
        self.0.restore_labels(labels);
    }

    #[wasm_bindgen(js_name = setPalette)]
    pub fn set_palette(&mut self, colors: Vec<String>) {
        self.0.set_palette(&colors);
    }

    #[wasm_bindgen(js_name = exportLabels)]
    pub fn export_labels(&self) -> Result<Vec<u8>, JsError> {
        Ok(self.0.export_labels()?)
    }

    #[wasm_bindgen(js_name = classVolumesMl)]
    pub fn class_volumes_ml(&self, classes: usize) -> Vec<f64> {
        self.0.class_volumes_ml(classes)
    }

    pub fn summary(&self) -> Result<JsValue, JsError> {
        Ok(serde_wasm_bindgen::to_value(&self.0.volume.summary())?)
    }

    #[wasm_bindgen(js_name = summaryText)]
    pub fn summary_text(&self) -> String {
        self.0.volume.summary().to_string()
    }

    #[wasm_bindgen(js_name = sliceCount)]
    pub fn slice_count(&self) -> usize {
        self.0.slice_count()
    }

    pub fn width(&self) -> usize {
        self.0.width()
    }

    pub fn height(&self) -> usize {
        self.0.height()
    }

    #[wasm_bindgen(js_name = defaultWindow)]
    pub fn default_window(&self) -> Vec<f32> {
        self.0.default_window().to_vec()
    }

    #[wasm_bindgen(js_name = renderSlice)]
    pub fn render_slice(&self, index: usize, level: f32, window: f32, opacity: f32) -> Vec<u8> {
        self.0
            .render_along(self.0.view_axis(), index, level, window, opacity)
    }

    #[wasm_bindgen(js_name = renderAlong)]
    pub fn render_along(
        &self,
        axis: usize,
        index: usize,
        level: f32,
        window: f32,
        opacity: f32,
    ) -> Vec<u8> {
        self.0.render_along(axis, index, level, window, opacity)
    }

    #[wasm_bindgen(js_name = planeSize)]
    pub fn plane_size(&self, axis: usize) -> Vec<usize> {
        self.0.plane_size(axis).to_vec()
    }

    #[wasm_bindgen(js_name = planeSpacing)]
    pub fn plane_spacing(&self, axis: usize) -> Vec<f64> {
        self.0.plane_spacing(axis).to_vec()
    }

    #[wasm_bindgen(js_name = ijkAt)]
    pub fn ijk_at(&self, index: usize, x: usize, y: usize) -> Option<Vec<u32>> {
        let ijk = self.0.ijk_at(index, x, y)?;
        Some(ijk.iter().map(|&v| v as u32).collect())
    }

    #[wasm_bindgen(js_name = labelAt)]
    pub fn label_at(&self, index: usize, x: usize, y: usize) -> Option<u8> {
        self.0.label_at(index, x, y)
    }

    #[wasm_bindgen(js_name = valueAt)]
    pub fn value_at(&self, index: usize, x: usize, y: usize) -> Option<f32> {
        self.0.value_at(index, x, y)
    }
}

/// The `view`-th of slice `index`'s Teach views under `seed`.
fn teach_view(seed: u32, index: usize, view: usize) -> Augment {
    Family::TEACH.slice_views(seed.into(), index, view + 1)[view]
}
