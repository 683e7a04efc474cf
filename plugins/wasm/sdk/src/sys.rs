//! The raw host interface. On wasm32 these are imports from module `lanekeeper`, with strings
//! crossing guest memory as described in docs/PLUGINS.md; elsewhere they answer from
//! [`crate::testing`].

#[cfg(target_arch = "wasm32")]
pub use guest::{http_get, lane, log, metric};

#[cfg(not(target_arch = "wasm32"))]
pub use crate::testing::host::{http_get, lane, log, metric};

#[cfg(target_arch = "wasm32")]
pub mod guest {
    use crate::{__rt, Context, IntoOutcome, LaneState, Probe, wire};

    #[link(wasm_import_module = "lanekeeper")]
    unsafe extern "C" {
        #[link_name = "lane"]
        fn host_lane(ptr: *const u8, len: usize) -> i64;
        #[link_name = "http_get"]
        fn host_http_get(ptr: *const u8, len: usize, timeout_ms: i64) -> i64;
        #[link_name = "metric"]
        fn host_metric(ptr: *const u8, len: usize) -> i64;
        #[link_name = "log"]
        fn host_log(level: i32, ptr: *const u8, len: usize);
        #[link_name = "panic_message"]
        fn host_panic_message(ptr: *const u8, len: usize);
    }

    /// Takes back a buffer the host filled through [`alloc`] and returned packed.
    fn take_bytes(packed: i64) -> Option<Vec<u8>> {
        if packed == 0 {
            return None;
        }
        let bits = packed as u64;
        let (ptr, len) = (
            (bits >> 32) as usize as *mut u8,
            (bits & 0xffff_ffff) as usize,
        );
        // SAFETY: the host returns only buffers it got from `alloc(len)` with this exact
        // length, each once; `alloc` made them as `Box<[u8]>` of that length.
        let bytes = unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) };
        Some(bytes.into_vec())
    }

    fn give(bytes: Vec<u8>) -> i64 {
        let bytes = bytes.into_boxed_slice();
        let len = bytes.len() as u64;
        let ptr = Box::into_raw(bytes) as *mut u8 as usize as u64;
        ((ptr << 32) | len) as i64
    }

    pub fn lane(name: &str) -> Option<LaneState> {
        // SAFETY: the host reads `len` bytes at `ptr`, which `name` owns for the call.
        let record = take_bytes(unsafe { host_lane(name.as_ptr(), name.len()) })?;
        LaneState::from_wire(name, &record)
    }

    pub fn http_get(url: &str, timeout_ms: i64) -> Probe {
        // SAFETY: as in `lane`.
        let record = take_bytes(unsafe { host_http_get(url.as_ptr(), url.len(), timeout_ms) });
        record
            .and_then(|r| Probe::from_wire(&r))
            .unwrap_or_default()
    }

    pub fn metric(name: &str) -> Result<f64, String> {
        // SAFETY: as in `lane`.
        let record = take_bytes(unsafe { host_metric(name.as_ptr(), name.len()) });
        match record.as_deref().map(wire::metric) {
            Some(Some(reading)) => reading,
            _ => Err(format!("metric `{name}` could not be read")),
        }
    }

    pub fn log(level: i32, message: &str) {
        // SAFETY: as in `lane`.
        unsafe { host_log(level, message.as_ptr(), message.len()) }
    }

    /// A zeroed buffer of `len` bytes for the host to write into; reclaimed by [`take`].
    pub fn alloc(len: i32) -> i32 {
        let buf = vec![0u8; len.max(0) as usize].into_boxed_slice();
        Box::into_raw(buf) as *mut u8 as usize as i32
    }

    /// Reports a panic's message and position to the host before the trap.
    fn hook() {
        std::panic::set_hook(Box::new(|info| {
            let msg = info.to_string();
            // SAFETY: as in `lane`.
            unsafe { host_panic_message(msg.as_ptr(), msg.len()) }
        }));
    }

    pub fn evaluate<R: IntoOutcome>(ptr: i32, len: i32, f: impl FnOnce(&Context) -> R) -> i64 {
        hook();
        let ctx = take_bytes((((ptr as u32 as u64) << 32) | (len as u32 as u64)) as i64)
            .unwrap_or_default();
        __rt::run(Context::from_wire(ctx), f).map_or(0, give)
    }

    pub fn params(params: &[(&str, &str)]) -> i64 {
        give(__rt::params_json(params).into_bytes())
    }
}
