//! The request service of one connection: axum's router, with each request marked busy from
//! its head until its response body is finished or dropped, upgrades noted (no more read
//! deadlines), and the request body held to `header_read_timeout_secs` from its head.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, Response, StatusCode};
use axum::Router;
use hyper::body::Incoming;
use hyper::service::Service;
use hyper_util::service::TowerToHyperService;
use tokio::time::Instant;

use super::activity::Activity;
use super::body::{Deadline, Tracked};

/// The router as seen by one connection.
#[derive(Clone)]
pub struct ConnService {
    router: TowerToHyperService<Router>,
    activity: Arc<Activity>,
    body_timeout: Duration,
}

impl ConnService {
    /// Serves `router` on the connection whose state is `activity`.
    pub fn new(router: Router, activity: Arc<Activity>, body_timeout: Duration) -> Self {
        Self {
            router: TowerToHyperService::new(router),
            activity,
            body_timeout,
        }
    }
}

impl Service<Request<Incoming>> for ConnService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send>>;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let busy = self.activity.begin();
        let deadline = Instant::now() + self.body_timeout;
        let request = request.map(|body| Deadline::new(body, deadline));
        let response = self.router.call(request);
        let activity = Arc::clone(&self.activity);
        Box::pin(async move {
            let response = response.await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                activity.upgraded();
            }
            Ok(response.map(|body| Body::new(Tracked::new(body, busy))))
        })
    }
}
