//! The client side of the control API, used by every subcommand but `start` and `devnet`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::NodeError;
use crate::keystore::{self, API_ADDR_FILE};

/// Talks to the node running on one data directory.
pub struct ApiClient {
    base: String,
    token: String,
    http: reqwest::Client,
    data_dir: PathBuf,
}

impl ApiClient {
    /// Finds the running node through `data_dir/api.addr` and `data_dir/api.token`.
    pub fn from_data_dir(data_dir: &Path) -> Result<Self, NodeError> {
        let addr_path = data_dir.join(API_ADDR_FILE);
        let addr = std::fs::read_to_string(&addr_path).map_err(|_| {
            NodeError::Api(format!(
                "no node is running on {} (no {API_ADDR_FILE}); start one with `warren start --data-dir {}`",
                data_dir.display(),
                data_dir.display()
            ))
        })?;
        let token = keystore::read_api_token(data_dir)?;
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| NodeError::Api(e.to_string()))?;
        Ok(Self {
            base: format!("http://{}", addr.trim()),
            token,
            http,
            data_dir: data_dir.to_owned(),
        })
    }

    /// `GET path` and decode the JSON answer.
    pub async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        let url = format!("{}{}", self.base, path);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                NodeError::Api(format!(
                    "node at {} (data dir {}) is not answering: {e}",
                    self.base,
                    self.data_dir.display()
                ))
            })?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| NodeError::Api(e.to_string()))?;
        if !status.is_success() {
            let msg = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
                .unwrap_or_else(|| String::from_utf8_lossy(&body).into_owned());
            return Err(NodeError::Api(format!("{status}: {msg}")));
        }
        serde_json::from_slice(&body)
            .map_err(|e| NodeError::Api(format!("bad answer from {url}: {e}")))
    }
}
