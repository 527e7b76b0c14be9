//! The `interrupt` pollable: how the guest waits for Ctrl-C. Knows the
//! interrupt count's channel; knows nothing of what an interrupt stops.

use wasmtime_wasi::p2::Pollable;

/// The `interrupt` pollable: ready once the interrupt count is at least 1.
pub struct Interrupt(pub Option<tokio::sync::watch::Receiver<u32>>);

#[wasmtime_wasi::async_trait]
impl Pollable for Interrupt {
    async fn ready(&mut self) {
        match &mut self.0 {
            Some(rx) => {
                if rx.wait_for(|n| *n >= 1).await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
            None => std::future::pending().await,
        }
    }
}
