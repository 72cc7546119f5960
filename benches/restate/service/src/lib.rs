//! The Restate side of the drctl durable-step benchmark: a service `Steps`
//! whose handler `run(n)` performs `n` no-op durable steps, each a `ctx.run`
//! of a trivial closure returning a small value (journaled by Restate), the
//! same no-op durable step the drctl engine is measured with.

use restate_sdk::prelude::*;

pub struct Steps;

#[restate_sdk::service]
impl Steps {
    #[handler]
    async fn run(&self, ctx: Context<'_>, n: u64) -> Result<u64, HandlerError> {
        let mut acc = 0u64;
        for i in 0..n {
            acc += ctx.run(|| async move { Ok(i) }).await?;
        }
        Ok(acc)
    }
}

/// Serve the SDK's HTTP endpoint (h2c) with `Steps` bound on 127.0.0.1:`port`.
pub async fn serve(port: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    eprintln!("steps-service listening on {addr}");
    HttpServer::new(Endpoint::builder().bind(Steps).build()).listen_and_serve(addr).await;
}
