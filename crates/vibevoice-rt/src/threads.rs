//! Fixes the CPU thread count of candle (and rayon) once, at start-up.
//!
//! Unless `RAYON_NUM_THREADS` is set, candle 0.11 works the count out again on every CPU matmul
//! it runs itself, and on Linux that means parsing `/proc/cpuinfo` (the physical-core count):
//! measured with `strace`, the tiny model's service read it 328 times in a 2-second stream on
//! the model thread (the real model's matrices go to vv-kernels, which asks once). Setting the
//! variable to the count candle would compute gives the same count without the reads.

/// Sets `RAYON_NUM_THREADS` to candle's own thread count when it is not set. Call first thing
/// in `main`, before any other thread exists (the environment is process-wide).
pub fn pin_thread_count() {
    if std::env::var_os("RAYON_NUM_THREADS").is_none() {
        let threads = candle_core::utils::get_num_threads();
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
}
