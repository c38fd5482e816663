//! temporary micro benchmark (to be deleted)
use candle_core::{Device, Tensor};
use std::time::Instant;

fn time<F: FnMut() -> Tensor>(name: &str, bytes: f64, mut f: F) {
    let _ = f();
    let mut v = vec![];
    for _ in 0..20 {
        let t = Instant::now();
        let _ = f();
        v.push(t.elapsed().as_secs_f64() * 1e3);
    }
    v.sort_by(f64::total_cmp);
    println!("{name}: median {:.2} ms min {:.2}  -> {:.1} GB/s (min)", v[v.len() / 2], v[0], bytes / v[0] / 1e6);
}

fn split_mm(x: &Tensor, w: &Tensor, parts: usize) -> Tensor {
    let n = w.dim(1).unwrap();
    let chunk = n / parts;
    let outs: Vec<Tensor> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..parts).map(|p| {
            let wp = w.narrow(1, p * chunk, chunk).unwrap();
            s.spawn(move || x.matmul(&wp).unwrap())
        }).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    Tensor::cat(&outs, 1).unwrap()
}

fn split_rows_mm(x: &Tensor, w: &Tensor, parts: usize) -> Tensor {
    let k = w.dim(0).unwrap();
    let chunk = k / parts;
    let outs: Vec<Tensor> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..parts).map(|p| {
            let wp = w.narrow(0, p * chunk, chunk).unwrap();
            let xp = x.narrow(1, p * chunk, chunk).unwrap();
            s.spawn(move || xp.matmul(&wp).unwrap())
        }).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let mut acc = outs[0].clone();
    for o in &outs[1..] { acc = (acc + o).unwrap(); }
    acc
}

#[test]
#[ignore]
fn micro() {
    let d = Device::Cpu;
    for (k, n) in [(2048usize, 8192usize), (8192, 2048), (1024, 4096)] {
    let bytes = (k * n * 4) as f64;
    let w = Tensor::randn(0f32, 1., (k, n), &d).unwrap();
    let wt = w.t().unwrap().contiguous().unwrap();
    for m in [1usize, 2, 8, 40] {
        println!("== k={k} n={n} m={m}");
        let x = Tensor::randn(0f32, 1., (m, k), &d).unwrap();
        time("x @ W[k,n]", bytes, || x.matmul(&w).unwrap());
        time("x @ Wt[n,k].t()", bytes, || x.matmul(&wt.t().unwrap()).unwrap());
        time("(W[k,n].t() @ x.t()).t()", bytes, || w.t().unwrap().matmul(&x.t().unwrap()).unwrap().t().unwrap().contiguous().unwrap());
        time("(Wt[n,k] @ x.t()).t()", bytes, || wt.matmul(&x.t().unwrap()).unwrap().t().unwrap().contiguous().unwrap());
    }
    }
}
