//! Rate limits across nodes sharing one PostgreSQL: the limit is the deployment's, not
//! each node's; a node cut off from the store falls back to its share.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::drills::{Cluster, ProxyMode, StoreProxy, eventually};
use crate::helpers::{TestApp, fresh_postgres_database};

/// Nodes on one store; the first one's admin token for all.
async fn nodes(url: &str, n: usize) -> Vec<TestApp> {
    let first = TestApp::spawn_with(Some(url.to_string()), |_| {}).await;
    let mut all = vec![first];
    for _ in 1..n {
        let node = all[0].second_node().await;
        all.push(node);
    }
    settled(url, n).await;
    all
}

/// Waits until every node has taken a turn since all of them joined. Every node takes
/// one before it serves, but the earlier ones learn of the later ones only at their
/// next turn (every 100 ms, later on a loaded machine): until then a node counts itself
/// alone and would admit the whole limit.
async fn settled(url: &str, n: usize) {
    let store = sqlx::PgPool::connect(url).await.unwrap();
    let joined: i64 = sqlx::query_scalar("SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint")
        .fetch_one(&store)
        .await
        .unwrap();
    eventually("every node has counted the others", async || {
        let sql = "SELECT count(*) = $2 AND coalesce(bool_and(seen_at > $1), false) FROM cluster_nodes";
        sqlx::query_scalar::<_, bool>(sql).bind(joined).bind(n as i64).fetch_one(&store).await.unwrap()
    })
    .await;
    store.close().await;
}

/// A limited key and an unlimited probe created after it: once a node accepts the
/// probe, it knows the limited key too (changes apply in order), and no request has
/// spent from the limit yet.
async fn limited_key(nodes: &[TestApp], instance: &(String, String), account: &str, limit: u32) -> String {
    let a = &nodes[0];
    // A day-long window: the test cannot straddle two windows unless run at midnight UTC.
    let rate_limit = json!({"limit": limit, "window_seconds": 86_400});
    let body = json!({"name": "limited", "kind": "api_key", "scopes": ["messages:send"], "rate_limit": rate_limit});
    let limited = a.create_token(account, body).await["token"].as_str().unwrap().to_string();
    let probe = json!({"name": "probe", "kind": "api_key", "scopes": ["messages:send"]});
    let probe = a.create_token(account, probe).await["token"].as_str().unwrap().to_string();
    for node in nodes {
        eventually("every node knows the keys", async || {
            node.bearer(instance, Method::POST, "/send-text", Some(&probe)).await.status() == StatusCode::OK
        })
        .await;
    }
    limited
}

async fn spread_over(nodes: &[TestApp], instance: &(String, String), key: &str, requests: usize) -> usize {
    let mut accepted = 0;
    for i in 0..requests {
        let response = nodes[i % nodes.len()].bearer(instance, Method::POST, "/send-text", Some(key)).await;
        match response.status() {
            StatusCode::OK => accepted += 1,
            StatusCode::TOO_MANY_REQUESTS => {
                let retry_after: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
                assert!((1..=86_400).contains(&retry_after), "{retry_after}");
            }
            other => panic!("unexpected {other}"),
        }
    }
    accepted
}

async fn limit_holds_across(n: usize) {
    let url = fresh_postgres_database().await;
    let nodes = nodes(&url, n).await;
    let account = nodes[0].create_account("limited").await;
    let instance = nodes[0].ruled_instance(&account).await;
    let key = limited_key(&nodes, &instance, &account, 10).await;
    let accepted = spread_over(&nodes, &instance, &key, 40).await;
    // Each node counting alone would let up to 10 × n through.
    assert!((9..=11).contains(&accepted), "{accepted} of 40 accepted across {n} nodes, limit 10");
    // A second round on the same window: the limit stays spent everywhere.
    let again = spread_over(&nodes, &instance, &key, 3 * n).await;
    assert!(accepted + again <= 11, "{accepted} then {again}");
    for node in nodes {
        node.stop().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_two_nodes() {
    limit_holds_across(2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_limit_holds_across_three_nodes() {
    limit_holds_across(3).await;
}

/// Traffic arriving at one node only still gets the whole limit (the idle node's share
/// moves to the busy one), never more.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_nodes_share_moves_to_the_busy_one() {
    let url = fresh_postgres_database().await;
    let nodes = nodes(&url, 2).await;
    let account = nodes[0].create_account("one-sided").await;
    let instance = nodes[0].ruled_instance(&account).await;
    let key = limited_key(&nodes, &instance, &account, 10).await;
    let busy = &nodes[0..1];
    let first = spread_over(busy, &instance, &key, 5).await;
    assert_eq!(first, 5, "its own share at once");
    let mut accepted = first;
    for _ in 0..600 {
        accepted += spread_over(busy, &instance, &key, 1).await;
        if accepted >= 10 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    assert_eq!(accepted, 10, "the busy node got the idle node's share");
    assert_eq!(spread_over(&nodes, &instance, &key, 10).await, 0, "and nothing past the limit");
    for node in nodes {
        node.stop().await;
    }
}

/// A node whose store connection is cut admits its share (`limit / nodes`) and no
/// more; the node still connected reserves that share and keeps to the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_cut_off_from_the_store_keeps_to_its_share() {
    let cluster = Cluster::create();
    let proxy = StoreProxy::start(cluster.port).await;
    let a = TestApp::spawn_with(Some(cluster.url()), |_| {}).await;
    let mut b = TestApp::spawn_with(Some(proxy.url()), |_| {}).await;
    b.admin_token = a.admin_token.clone();
    settled(&cluster.url(), 2).await;
    let nodes = [a, b];
    let account = nodes[0].create_account("partition").await;
    let instance = nodes[0].ruled_instance(&account).await;
    let key = limited_key(&nodes, &instance, &account, 10).await;
    proxy.set(ProxyMode::Cut);
    let [a, b] = nodes;
    eventually("node B sees its store gone", async || {
        b.http.get(b.url("/readyz")).send().await.unwrap().status() == StatusCode::SERVICE_UNAVAILABLE
    })
    .await;
    let on_b = spread_over(std::slice::from_ref(&b), &instance, &key, 20).await;
    assert_eq!(on_b, 5, "limit 10 over 2 nodes");
    let on_a = spread_over(std::slice::from_ref(&a), &instance, &key, 20).await;
    assert!(on_a + on_b <= 11, "A {on_a} + B {on_b}");
    assert!(on_a >= 4, "A keeps the rest: {on_a}");
    proxy.set(ProxyMode::Pass);
    a.stop().await;
    b.stop().await;
}
