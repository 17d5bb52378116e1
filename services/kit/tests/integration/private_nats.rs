//! A private `nats-server -js` on a free port, for tests that take the broker
//! down without disturbing the shared one.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A NATS server process owned by one test; killed on drop.
pub struct PrivateNats {
    port: u16,
    store_dir: PathBuf,
    process: Option<Child>,
}

impl PrivateNats {
    /// Starts a server with JetStream on a free port and waits until it accepts connections.
    pub async fn start() -> Self {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .expect("a free port")
            .port();
        let store_dir =
            std::env::temp_dir().join(format!("silo-kit-nats-{}", silo_testenv::unique_suffix()));
        let mut server = Self {
            port,
            store_dir,
            process: None,
        };
        server.resume().await;
        server
    }

    /// The client URL.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Kills the server (an outage); its JetStream store stays on disk.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            let _ = process.kill();
            let _ = process.wait();
        }
    }

    /// Starts the server again on the same port and store.
    pub async fn resume(&mut self) {
        let process = Command::new("nats-server")
            .args([
                "-js",
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-sd",
            ])
            .arg(&self.store_dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server is on PATH");
        self.process = Some(process);
        crate::support::wait_until(
            "private NATS accepting connections",
            Duration::from_secs(10),
            || async {
                tokio::net::TcpStream::connect(("127.0.0.1", self.port))
                    .await
                    .is_ok()
            },
        )
        .await;
    }
}

impl Drop for PrivateNats {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.store_dir);
    }
}
