//! The native command line: the same library the page runs, on files.

#[cfg(not(target_arch = "wasm32"))]
mod cli;

#[cfg(not(target_arch = "wasm32"))]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(target_arch = "wasm32"))]
fn main() -> std::process::ExitCode {
    keep_freed_memory();
    default_device_is_the_cpu();
    flush_subnormals();
    cli::main()
}

/// Subnormal floats (below 1.2e-38) make x86's arithmetic units take a microcode assist, about a
/// hundred times an ordinary multiply-add. Training produces them: the cross-entropy gradient of a
/// pixel the head is sure of, e^-90 over the batch's pixels, flows into every backward product,
/// and a CNN-head row of the experiment went from 4 s an epoch to over 11 s after 40 epochs,
/// nearly all in gemm's kernel. Flushing them to zero (MXCSR's FTZ and DAZ, as GPUs do) on this
/// thread and on every rayon thread, which run the CPU backend's and gemm's work, keeps the cost
/// flat. The browser has no such switch: wasm requires subnormals.
#[cfg(not(target_arch = "wasm32"))]
fn flush_subnormals() {
    flush_on_this_thread();
    // Before anything else starts the global pool; an error means it is already running.
    let _ = rayon::ThreadPoolBuilder::new()
        .start_handler(|_| flush_on_this_thread())
        .build_global();
}

#[cfg(target_arch = "x86_64")]
fn flush_on_this_thread() {
    /// MXCSR's flush-to-zero (bit 15) and denormals-are-zero (bit 6).
    const FTZ_DAZ: u32 = 0x8040;
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr and ldmxcsr read and write this thread's SSE control register through a
    // local; only the handling of subnormal results and inputs changes.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack));
        csr |= FTZ_DAZ;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack));
    }
}

#[cfg(all(not(target_arch = "x86_64"), not(target_arch = "wasm32")))]
fn flush_on_this_thread() {}

/// burn builds some state on its default device without asking (Adam's moments read back from a
/// training checkpoint); with the wgpu feature compiled in, that would start a GPU (or lavapipe)
/// beside the CPU backend every command computes on. `BURN_DEVICE` set by the caller wins.
#[cfg(not(target_arch = "wasm32"))]
fn default_device_is_the_cpu() {
    if std::env::var_os("BURN_DEVICE").is_none() {
        // SAFETY: no other thread exists yet to read the environment.
        unsafe { std::env::set_var("BURN_DEVICE", "flex") };
    }
}

/// The CPU backend frees and reallocates tens of MB per op. With mimalloc's defaults those pages
/// go back to the kernel after a second and come back zeroed: 28% of a head's training step was
/// the kernel clearing pages. Keeping them (the process stays at its peak size) makes a step 1.4x
/// faster (`autosam bench` measures both).
#[cfg(not(target_arch = "wasm32"))]
fn keep_freed_memory() {
    // Its position in mimalloc.h's `mi_option_e`, the same in v2 and v3; the crate leaves it
    // unnamed.
    const PURGE_DELAY: libmimalloc_sys::mi_option_t = 15;
    // A purge delay set in the environment wins: `autosam bench` compares the two.
    if std::env::var_os("MIMALLOC_PURGE_DELAY").is_some() {
        return;
    }
    // SAFETY: mi_option_set is not thread safe, and no other thread exists yet.
    unsafe { libmimalloc_sys::mi_option_set(PURGE_DELAY, -1) };
}

// The browser build is the library; this target only has to exist.
#[cfg(target_arch = "wasm32")]
fn main() {}
