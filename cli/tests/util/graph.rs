//! Plain HTTP against a server's Graph API (`/v1.0`): every call returns what came back,
//! and says what it sent and what it got when a test fails.
#![allow(dead_code, clippy::unwrap_used)]

use serde_json::{json, Value};

use super::Cluster;

pub struct Api {
    /// `http://HOST:PORT/v1.0`.
    pub base: String,
    agent: ureq::Agent,
}

/// One answer.
#[derive(Debug)]
pub struct Got {
    pub call: String,
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub text: String,
}

impl Got {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text)
            .unwrap_or_else(|e| panic!("{}\nthe body is not JSON: {e}", self.describe()))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn describe(&self) -> String {
        format!(
            "call: {}\nstatus: {}\nheaders: {:?}\nbody: {}",
            self.call, self.status, self.headers, self.text
        )
    }

    /// Asserts the status, and for an error Graph's shape with `code`.
    pub fn expect(&self, status: u16) -> &Got {
        assert_eq!(self.status, status, "{}", self.describe());
        if status >= 400 {
            let e = &self.json()["error"];
            assert!(
                e["code"].is_string()
                    && e["message"].is_string()
                    && e["innerError"]["request-id"].is_string()
                    && e["innerError"]["date"].is_string(),
                "not Graph's error shape\n{}",
                self.describe()
            );
        }
        self
    }

    pub fn expect_error(&self, status: u16, code: &str) -> &Got {
        self.expect(status);
        assert_eq!(self.json()["error"]["code"], code, "{}", self.describe());
        self
    }
}

impl Api {
    /// The Graph API of the server of datacenter `dc`.
    pub fn of(c: &Cluster, dc: &str) -> Api {
        let http = c.servers.as_ref().unwrap().lock().unwrap().servers[dc]
            .http
            .clone();
        Api::at(&http)
    }

    pub fn at(http: &str) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .build()
            .into();
        Api {
            base: format!("{}/v1.0", http.trim_end_matches('/')),
            agent,
        }
    }

    /// The API at `https` (an https:// address), trusting only the certificate `cert_pem`.
    pub fn at_trusting(https: &str, cert_pem: &[u8]) -> Api {
        use ureq::tls::{Certificate, RootCerts, TlsConfig};
        let cert = Certificate::from_pem(cert_pem).unwrap().to_owned();
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(std::sync::Arc::new(vec![cert])))
            .build();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(30)))
            .tls_config(tls)
            .build()
            .into();
        Api {
            base: format!("{}/v1.0", https.trim_end_matches('/')),
            agent,
        }
    }

    /// `call`, returning the transport's error instead of panicking on it.
    pub fn try_get(&self, path: &str, token: &str) -> Result<u16, String> {
        let url = format!("{}/{}", self.base, path.trim_start_matches('/'));
        let req = ureq::http::Request::builder()
            .method("GET")
            .uri(&url)
            .header("Authorization", format!("Bearer {token}"))
            .body(())
            .unwrap();
        self.agent
            .run(req)
            .map(|r| r.status().as_u16())
            .map_err(|e| e.to_string())
    }

    /// `method` on `path` (under /v1.0, or a whole URL) with a bearer token (if any), a
    /// body (if any) and more headers.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Got {
        let url = match path.starts_with("http") {
            true => path.to_string(),
            false => format!("{}/{}", self.base, path.trim_start_matches('/')),
        };
        let mut req = ureq::http::Request::builder().method(method).uri(&url);
        if let Some(t) = token {
            req = req.header("Authorization", format!("Bearer {t}"));
        }
        if body.is_some() {
            req = req.header("Content-Type", "application/json");
        }
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let call = format!(
            "{method} {url} headers={headers:?} body={}",
            body.unwrap_or("")
        );
        let got = match body {
            Some(b) => self.agent.run(req.body(b.to_string()).unwrap()),
            None => self.agent.run(req.body(()).unwrap()),
        };
        let mut resp = got.unwrap_or_else(|e| panic!("{call}: {e}"));
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or_default().to_string()))
            .collect();
        Got {
            call,
            status: resp.status().as_u16(),
            headers,
            text: resp.body_mut().read_to_string().unwrap_or_default(),
        }
    }

    pub fn get(&self, path: &str, token: &str) -> Got {
        self.call("GET", path, Some(token), None, &[])
    }

    pub fn post(&self, path: &str, token: &str, body: &Value) -> Got {
        self.call("POST", path, Some(token), Some(&body.to_string()), &[])
    }

    pub fn patch(&self, path: &str, token: &str, body: &Value) -> Got {
        self.call("PATCH", path, Some(token), Some(&body.to_string()), &[])
    }

    pub fn delete(&self, path: &str, token: &str) -> Got {
        self.call("DELETE", path, Some(token), None, &[])
    }
}

/// A token from `dirctl token issue` (the control plane in the cluster root).
pub fn token(c: &Cluster, tenant: &str, role: &str, more: &[&str]) -> String {
    let root = c.root.display().to_string();
    let mut args = vec![
        "--cluster",
        &root,
        "token",
        "issue",
        "--tenant",
        tenant,
        "--role",
        role,
    ];
    args.extend_from_slice(more);
    let r = c.run(&args);
    assert_eq!(r.code, 0, "{}", r.describe());
    r.stdout.trim().to_string()
}

pub fn id_of(g: &Got) -> String {
    g.json()["id"]
        .as_str()
        .unwrap_or_else(|| panic!("no id\n{}", g.describe()))
        .to_string()
}

/// A user's create body as SDKs send it (a password, which geodir does not keep).
pub fn user_body(upn: &str) -> Value {
    json!({"@odata.type": "#microsoft.graph.user", "userPrincipalName": upn, "displayName": upn, "accountEnabled": true,
           "passwordProfile": {"password": "not kept", "forceChangePasswordNextSignIn": true}})
}
