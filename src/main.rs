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
    cli::main()
}

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
