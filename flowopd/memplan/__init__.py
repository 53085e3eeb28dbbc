"""The memory plan: each training stage's peak accelerator memory on SD3.5 before a run starts (``plan``), from
activation bytes counted on real-width slices (``count``, ``families``), the stage settings read from configs
(``settings``), the pre-flight refusal (``preflight``), ``flowopd plan memory`` (``cli``) and the tables of
``docs/sd35.md`` (``docs``)."""
