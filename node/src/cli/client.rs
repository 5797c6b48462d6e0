//! The client side of the control API, used by every subcommand but `start` and `devnet`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::error::NodeError;
use crate::keystore::{self, API_ADDR_FILE};

/// Longest a single upload or download may take.
const TRANSFER_TIMEOUT: Duration = Duration::from_secs(24 * 3600);

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
        let resp = self.send(self.http.get(self.url(path))).await?;
        Self::json(resp).await
    }

    /// `POST path` (empty body) and decode the JSON answer.
    pub async fn post<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        let resp = self.send(self.http.post(self.url(path))).await?;
        Self::json(resp).await
    }

    /// `DELETE path` and decode the JSON answer.
    pub async fn delete<T: DeserializeOwned>(&self, path: &str) -> Result<T, NodeError> {
        let resp = self.send(self.http.delete(self.url(path))).await?;
        Self::json(resp).await
    }

    /// `POST path?query` with a streamed body; decode the JSON answer.
    pub async fn post_body<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
        headers: &[(&str, String)],
        body: reqwest::Body,
    ) -> Result<T, NodeError> {
        // Uploads may be large: the node answers once the last byte is stored.
        let mut req = self
            .http
            .post(self.url(path))
            .query(query)
            .body(body)
            .timeout(TRANSFER_TIMEOUT);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = self.send(req).await?;
        Self::json(resp).await
    }

    /// `GET path` for streaming; an error status becomes an error with the node's message.
    pub async fn get_stream(
        &self,
        path: &str,
        headers: &[(&str, String)],
    ) -> Result<reqwest::Response, NodeError> {
        let mut req = self.http.get(self.url(path)).timeout(TRANSFER_TIMEOUT);
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        match Self::json::<serde_json::Value>(resp).await {
            Err(e) => Err(e),
            Ok(v) => Err(NodeError::Api(format!("unexpected answer: {v}"))),
        }
    }

    /// `POST path` with a JSON body; decode the JSON answer. Long calls (model fetches, jobs) get
    /// the transfer timeout.
    pub async fn post_json<B: serde::Serialize, T: DeserializeOwned>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, NodeError> {
        let req = self
            .http
            .post(self.url(path))
            .json(body)
            .timeout(TRANSFER_TIMEOUT);
        let resp = self.send(req).await?;
        Self::json(resp).await
    }

    /// `POST path` with a JSON body, for a streamed answer.
    pub async fn post_json_stream<B: serde::Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<reqwest::Response, NodeError> {
        let req = self
            .http
            .post(self.url(path))
            .json(body)
            .timeout(TRANSFER_TIMEOUT);
        let resp = self.send(req).await?;
        if resp.status().is_success() {
            return Ok(resp);
        }
        match Self::json::<serde_json::Value>(resp).await {
            Err(e) => Err(e),
            Ok(v) => Err(NodeError::Api(format!("unexpected answer: {v}"))),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    async fn send(&self, req: reqwest::RequestBuilder) -> Result<reqwest::Response, NodeError> {
        req.bearer_auth(&self.token).send().await.map_err(|e| {
            NodeError::Api(format!(
                "node at {} (data dir {}) is not answering: {e}",
                self.base,
                self.data_dir.display()
            ))
        })
    }

    async fn json<T: DeserializeOwned>(resp: reqwest::Response) -> Result<T, NodeError> {
        let url = resp.url().path().to_owned();
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
