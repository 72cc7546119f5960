//! `steps-service [PORT]`: serves the `Steps` Restate service (see lib.rs).
//! Port: first argument, else `STEPS_SERVICE_PORT`, else 9080.

#[tokio::main]
async fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .or_else(|| std::env::var("STEPS_SERVICE_PORT").ok())
        .map(|p| p.parse().expect("port must be a u16"))
        .unwrap_or(9080);
    drctl_restate_bench::serve(port).await;
}
