//! Tenant paths on one host, built on purpose for the tests: a small HTTP/1.1 proxy on
//! loopback that serves each organisation under its own path prefix
//! (`http://127.0.0.1:PORT/org/acme/Users` → the `acme` server's `/Users`), as a SaaS
//! platform does (`/scim/v2/org/acme`). scim2-server serves one directory at its root, so
//! each organisation is its own real scim2-server behind its prefix.
//!
//! One request per connection (it answers `Connection: close`), as the fault proxy does.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};

pub struct TenantRouter {
    pub port: u16,
}

impl TenantRouter {
    /// Routes `/PREFIX/rest` to `127.0.0.1:upstream/rest`, for each (prefix, upstream).
    pub fn start(routes: &[(&str, u16)]) -> TenantRouter {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the tenant router");
        let port = l.local_addr().unwrap().port();
        let routes: Vec<(String, u16)> = routes.iter().map(|(p, u)| (p.trim_end_matches('/').to_string(), *u)).collect();
        std::thread::spawn(move || {
            for client in l.incoming().flatten() {
                let routes = routes.clone();
                std::thread::spawn(move || {
                    let _ = serve(client, &routes);
                });
            }
        });
        TenantRouter { port }
    }

    /// The base URL of one organisation.
    pub fn url(&self, prefix: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, prefix.trim_end_matches('/'))
    }
}

fn serve(client: TcpStream, routes: &[(String, u16)]) -> std::io::Result<()> {
    let mut reader = BufReader::new(client.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut headers = Vec::new();
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h)? == 0 || h == "\r\n" || h == "\n" {
            break;
        }
        let lower = h.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("content-length:") {
            length = v.trim().parse().unwrap_or(0);
        }
        if !lower.starts_with("connection:") {
            headers.push(h);
        }
    }
    let mut body = vec![0; length];
    reader.read_exact(&mut body)?;
    let mut parts = request_line.trim_end().splitn(3, ' ');
    let (method, target, version) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""), parts.next().unwrap_or("HTTP/1.1"));
    let mut client = client;
    let Some((rest, upstream)) = routes.iter().find_map(|(p, u)| {
        let rest = target.strip_prefix(p.as_str())?;
        (rest.is_empty() || rest.starts_with('/') || rest.starts_with('?')).then_some((rest, *u))
    }) else {
        let body = "{\"detail\":\"no organisation at this path\",\"status\":\"404\"}";
        return write!(
            client,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    };
    let rest = if rest.is_empty() || rest.starts_with('?') { format!("/{rest}") } else { rest.to_string() };
    let mut server = TcpStream::connect(("127.0.0.1", upstream))?;
    let mut head = format!("{method} {rest} {version}\r\n");
    for h in headers {
        head.push_str(&h);
    }
    head.push_str("Connection: close\r\n\r\n");
    server.write_all(head.as_bytes())?;
    server.write_all(&body)?;
    std::io::copy(&mut server, &mut client)?;
    client.shutdown(std::net::Shutdown::Both)
}
