//! temporary micro benchmark (to be deleted)
use candle_core::{Device, Tensor};
use std::time::Instant;

fn time<F: FnMut() -> Tensor>(name: &str, mut f: F) {
    let _ = f();
    let mut v = vec![];
    for _ in 0..30 {
        let t = Instant::now();
        let _ = f();
        v.push(t.elapsed().as_secs_f64() * 1e6);
    }
    v.sort_by(f64::total_cmp);
    println!("{name}: median {:.1} us min {:.1}", v[v.len() / 2], v[0]);
}

#[test]
#[ignore]
fn micro() {
    let d = Device::Cpu;
    for (t, c) in [(3200usize, 32usize), (200, 256), (1, 2048)] {
        println!("== T={t} C={c}");
        let w = Tensor::randn(0f32, 1., (t + 6, c), &d).unwrap();
        let x = Tensor::randn(0f32, 1., (t, c), &d).unwrap();
        let tap = Tensor::randn(0f32, 1., c, &d).unwrap();
        let full = tap.broadcast_as((t, c)).unwrap().contiguous().unwrap();
        time("narrow.broadcast_mul", || w.narrow(0, 3, t).unwrap().broadcast_mul(&tap).unwrap());
        time("mul same shape", || (&x * &full).unwrap());
        time("add same shape", || (&x + &full).unwrap());
        time("broadcast_add", || x.broadcast_add(&tap).unwrap());
        time("cat hist", || Tensor::cat(&[&w.narrow(0,0,6).unwrap(), &x], 0).unwrap());
        let h = Tensor::randn(0f32, 1., (t, 4 * c), &d).unwrap();
        time("gelu_erf 4C", || h.gelu_erf().unwrap());
        let w1 = Tensor::randn(0f32, 1., (4 * c, c), &d).unwrap();
        let w1c = w1.t().unwrap().contiguous().unwrap();
        time("mm1 t-view", || x.matmul(&w1.t().unwrap()).unwrap());
        time("mm1 contig", || x.matmul(&w1c).unwrap());
        let w2 = Tensor::randn(0f32, 1., (c, 4 * c), &d).unwrap();
        let w2c = w2.t().unwrap().contiguous().unwrap();
        time("mm2 t-view", || h.matmul(&w2.t().unwrap()).unwrap());
        time("mm2 contig", || h.matmul(&w2c).unwrap());
    }
}
