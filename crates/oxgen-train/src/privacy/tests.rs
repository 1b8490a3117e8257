//! The accountants against their reference implementations' published values. Every value is
//! cited with the file it comes from.

use super::*;

fn rel(a: f64, b: f64) -> f64 {
    (a - b).abs() / b.abs()
}

/// Opacus's `opacus/tests/accountants_test.py` (v1.6.0), `test_rdp_accountant`: q = 0.04,
/// σ = 1.5, int(90 / 0.04) = 2,250 steps, δ = 1e-5 → ε = 7.32911117143.
#[test]
fn rdp_matches_opacus() {
    let h = [Phase {
        sigma: 1.5,
        q: 0.04,
        steps: 2250,
    }];
    let e = epsilon(AccountantKind::Rdp, &h, 1e-5).unwrap();
    assert!(rel(e, 7.32911117143) < 1e-6, "{e}");
}

/// TensorFlow Privacy's `privacy/analysis/compute_dp_sgd_privacy_test.py` (v0.9.0),
/// `test_compute_dp_sgd_privacy` cases Test0 and Test1, with that library's orders (1.25 …
/// 4.5, 5 … 63, 128, 256, 512) and steps ⌈epochs·n/batch⌉.
#[test]
fn rdp_matches_tensorflow_privacy() {
    let orders: Vec<f64> = [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 3.0, 3.5, 4.0, 4.5]
        .into_iter()
        .chain((5..64).map(f64::from))
        .chain([128.0, 256.0, 512.0])
        .collect();
    for (n, batch, sigma, epochs, delta, want, order) in [
        (
            60_000u64,
            150u64,
            1.3,
            15u64,
            1e-5,
            0.724_223_402_610_959_5,
            19.0,
        ),
        (100_000, 100, 1.0, 30, 1e-7, 1.415_498_849_544_484_5, 13.0),
    ] {
        let steps = (epochs * n).div_ceil(batch);
        let h = [Phase {
            sigma,
            q: batch as f64 / n as f64,
            steps,
        }];
        let (e, a) = rdp::epsilon(&h, delta, &orders);
        assert!(rel(e, want) < 1e-6, "n {n}: {e} vs {want}");
        assert_eq!(a, order);
    }
}

/// Opacus's `accountants_test.py`, `test_prv_accountant`: q = 0.04, σ = 1.5, int(90 // 0.04)
/// = 2,249 steps (floor division of floats gives 2,249), δ = 1e-5 → ε = 6.777395712150674
/// (the upper bound, ε_err 0.01, δ_err δ/1000).
#[test]
fn prv_matches_opacus() {
    let h = [Phase {
        sigma: 1.5,
        q: 0.04,
        steps: 2249,
    }];
    let e = epsilon(AccountantKind::Prv, &h, 1e-5).unwrap();
    println!(
        "PRV ε {e}, relative error {:e}",
        rel(e, 6.777_395_712_150_674)
    );
    assert!(rel(e, 6.777_395_712_150_674) < 1e-6, "{e}");
    let (lo, mid, hi) = prv::epsilon_bounds(&h, 1e-5, &prv::PrvOptions::default()).unwrap();
    assert!(lo < mid && mid < hi, "{lo} {mid} {hi}");
    // The PRV bound is tighter than RDP's for the same mechanism.
    assert!(e < epsilon(AccountantKind::Rdp, &h, 1e-5).unwrap());
}

/// Opacus's `accountants_test.py`, `test_gdp_accountant` (same mechanism, 2,249 steps):
/// 6.59 < ε < 6.6. And the μ-GDP trade-off itself against normal-table values (Abramowitz &
/// Stegun, table 26.1): μ = 1 at ε = 0 gives δ = 2Φ(½) − 1 = 0.3829249225480262, and at ε = 1
/// δ = Φ(−½) − e·Φ(−3/2) = 0.3085375387259869 − e · 0.0668072012688581.
#[test]
fn gdp_matches_opacus_and_the_normal_table() {
    let h = [Phase {
        sigma: 1.5,
        q: 0.04,
        steps: 2249,
    }];
    let e = epsilon(AccountantKind::Gdp, &h, 1e-5).unwrap();
    assert!(6.59 < e && e < 6.6, "{e}");
    assert!(rel(gdp::delta_of(0.0, 1.0), 0.382_924_922_548_026_2) < 1e-12);
    let want = 0.308_537_538_725_986_9 - std::f64::consts::E * 0.066_807_201_268_858_1;
    assert!(rel(gdp::delta_of(1.0, 1.0), want) < 1e-12);
    // The root inverts δ(ε).
    let mu = gdp::mu_poisson(0.04, 1.5, 2249);
    assert!(rel(gdp::delta_of(e, mu), 1e-5) < 1e-9);
}

/// Opacus's `accountants_test.py`, `test_get_noise_multiplier_*` (q = 0.04, ε = 8, δ = 1e-5,
/// tolerance 0.01, checked there to 4 places): RDP over 90 epochs (2,250 steps) 1.416, RDP
/// over 2,000 steps 1.3562, PRV over 90 epochs 1.34765625, PRV over 2,000 steps 1.2915.
#[test]
fn sigma_search_matches_opacus() {
    for (kind, steps, want) in [
        (AccountantKind::Rdp, 2250, 1.416),
        (AccountantKind::Rdp, 2000, 1.3562),
        (AccountantKind::Prv, 2250, 1.347_656_25),
        (AccountantKind::Prv, 2000, 1.2915),
    ] {
        let s = sigma::sigma_for_epsilon(kind, 8.0, 1e-5, 0.04, steps, 0.01).unwrap();
        assert!((s - want).abs() < 5e-5, "{kind:?} {steps}: {s} vs {want}");
        let e = epsilon(
            kind,
            &[Phase {
                sigma: s,
                q: 0.04,
                steps,
            }],
            1e-5,
        )
        .unwrap();
        assert!(e <= 8.0 && e > 7.99, "{kind:?}: ε {e}");
    }
}

/// Bad input gives typed errors that name the parameter.
#[test]
fn bad_privacy_parameters_are_refused_by_name() {
    let named = |r: Result<f64>, want: &str| match r {
        Err(Error::Privacy { parameter, .. }) => assert_eq!(parameter, want),
        other => panic!("expected a privacy error on {want}, got {other:?}"),
    };
    let p = |sigma, q| {
        [Phase {
            sigma,
            q,
            steps: 10,
        }]
    };
    named(epsilon(AccountantKind::Rdp, &p(1.0, 0.0), 1e-5), "q");
    named(epsilon(AccountantKind::Rdp, &p(1.0, 1.5), 1e-5), "q");
    named(epsilon(AccountantKind::Prv, &p(0.0, 0.1), 1e-5), "sigma");
    named(epsilon(AccountantKind::Gdp, &p(1.0, 0.1), 1.0), "delta");
    named(validate_delta(1e-3, Some(1000)).map(|_| 0.0), "delta");
    assert!(validate_delta(1e-5, Some(1000)).is_ok());
    // ε = 1e-4 in 10⁶ full-batch steps: no σ up to 10⁶ reaches it.
    named(
        sigma::sigma_for_epsilon(AccountantKind::Rdp, 1e-4, 1e-5, 1.0, 1_000_000_000, 0.01),
        "epsilon",
    );
    named(
        "moments".parse::<AccountantKind>().map(|_| 0.0),
        "accountant",
    );
    // q = 1 is the full-batch Gaussian mechanism: RDP(α) = α/(2σ²) per step.
    assert!((rdp::rdp_one(1.0, 2.0, 3.0) - 3.0 / 8.0).abs() < 1e-15);
}

/// A ledger merges equal steps and serialises (checkpoints keep it).
#[test]
fn ledger_merges_and_round_trips() {
    let mut l = Ledger {
        accountant: AccountantKind::Rdp,
        delta: 1e-5,
        history: Vec::new(),
    };
    for _ in 0..5 {
        l.step(1.1, 0.01);
    }
    l.step(1.2, 0.01);
    assert_eq!(l.history.len(), 2);
    assert_eq!(l.steps(), 6);
    let back: Ledger = serde_json::from_str(&serde_json::to_string(&l).unwrap()).unwrap();
    assert_eq!(back, l);
    assert!(l.epsilon().unwrap() > 0.0);
}
