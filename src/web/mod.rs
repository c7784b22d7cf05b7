//! The wasm-bindgen surface the page calls: thin wrappers over the library, errors as JS errors.

pub mod console;
pub mod model;
pub mod teach;
pub mod volume;

use wasm_bindgen::prelude::*;

use crate::backend;
use burn::tensor::Device;

pub use model::WebModel;
pub use volume::WebVolume;

#[wasm_bindgen(start)]
pub fn start() {
    console_error_panic_hook::set_once();
    console::init();
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
/// read through JS since web-sys keeps the WebGPU bindings behind an unstable flag. Works in the
/// page and in its worker.
#[wasm_bindgen(js_name = adapterInfo)]
pub async fn adapter_info() -> Option<String> {
    use js_sys::{Promise, Reflect};
    use wasm_bindgen_futures::JsFuture;
    let get = |o: &JsValue, k: &str| Reflect::get(o, &JsValue::from_str(k)).ok();
    let gpu = get(&get(&js_sys::global(), "navigator")?, "gpu")?;
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

/// What the page offers before a model loads, from the library's one source of each: the head
/// kinds (name, label, Teach epochs), Teach's views per slice, the default classes, the palette
/// for other label codes, the training defaults and the most slices one `headLogits` call takes.
/// JSON, as `headSummary`.
#[wasm_bindgen(js_name = appDescription)]
pub fn app_description() -> String {
    use crate::heads::HeadKind;
    use crate::heads::store::{PALETTE, cardiac_classes};
    let defaults = crate::train::TrainConfig::default();
    let heads: Vec<_> = HeadKind::ALL
        .iter()
        .map(|k| serde_json::json!({"kind": k, "label": k.label(), "epochs": k.teach_epochs()}))
        .collect();
    serde_json::json!({
        "heads": heads,
        "teachHead": HeadKind::TEACH_DEFAULT,
        "teachViews": crate::augment::Family::TEACH_VIEWS,
        // Names the views' family in the page's embedding cache keys.
        "teachViewTag": format!("{}-view", crate::augment::Family::TEACH.tag()),
        "classes": cardiac_classes(),
        "palette": PALETTE,
        "lr": defaults.lr,
        "batchSize": defaults.batch_size,
        "headBatch": model::HEAD_BATCH,
    })
    .to_string()
}

/// The cardiac function (`cardiac::CardiacFunction` as JSON) from each frame's `classVolumesMl`
/// and the codes of LV, RV and MYO (RV or MYO below 1: absent); `undefined` when there is none.
#[wasm_bindgen(js_name = cardiacFunction)]
pub fn cardiac_function(frames: js_sys::Array, lv: i32, rv: i32, myo: i32) -> Option<String> {
    use crate::cardiac::{Codes, cardiac_function};
    let frames: Vec<Vec<f64>> = frames
        .iter()
        .map(|f| js_sys::Float64Array::from(f).to_vec())
        .collect();
    let code = |c: i32| usize::try_from(c).ok().filter(|&c| c > 0);
    let codes = Codes {
        lv: code(lv)?,
        rv: code(rv),
        myo: code(myo),
    };
    cardiac_function(&frames, codes).map(|f| serde_json::to_string(&f).unwrap_or_default())
}

/// Segment's cleanup, in place on a label volume of `dims` (x fastest): each class of
/// `1..classes` cut to its largest pieces; returns the voxels cleared. The page runs it on its
/// primary worker, as a whole CT's flood fills take seconds.
#[wasm_bindgen(js_name = keepLargestPieces)]
pub fn keep_largest_pieces(
    labels: &mut [u8],
    dims: Vec<u32>,
    classes: usize,
) -> Result<usize, JsError> {
    let dims: [usize; 3] = match dims[..] {
        [x, y, z] => [x as usize, y as usize, z as usize],
        _ => return Err(JsError::new("label dimensions are [x, y, z]")),
    };
    if dims.iter().product::<usize>() != labels.len() {
        return Err(JsError::new(&format!(
            "{} labels do not fill a {dims:?} volume",
            labels.len()
        )));
    }
    Ok(crate::components::Pieces::Largest.apply(labels, dims, classes))
}

/// Bytes of this instance's linear memory: it only ever grows, so this is its peak. The page sizes
/// its pool of workers from it.
#[wasm_bindgen(js_name = memoryBytes)]
pub fn memory_bytes() -> f64 {
    (core::arch::wasm32::memory_size::<0>() * 65536) as f64
}

/// Error records logged so far in this wasm instance (the page's worker asks after each job).
#[wasm_bindgen(js_name = errorsLogged)]
pub fn errors_logged() -> usize {
    console::errors_logged()
}
