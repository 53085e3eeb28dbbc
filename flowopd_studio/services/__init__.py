"""What the app's tabs do, as plain functions tested without Gradio: compare models side by side
(:mod:`.compare`), export an adapter as a LoRA (:mod:`.export`), read the reproduction results
(:mod:`.results`) and the built-in examples (:mod:`.examples`). Which adapters can be picked is
:mod:`.sources`; adapters loaded onto the app's model are cached by :mod:`.adapter_cache`; which files may be
written or served is :mod:`.files`.

May import ``flowopd`` and ``flowopd_studio.storage``; never gradio (the ``ui`` package wraps these).
"""
