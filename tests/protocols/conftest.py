from hypothesis import HealthCheck, settings

# Shared, noisy 2-core machines: no per-example deadline, and no failure for slow generation.
settings.register_profile(
    "protocols", deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)
settings.load_profile("protocols")
