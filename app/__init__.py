"""medtl's Streamlit clinician app (entry: ``streamlit run app/main.py`` or ``medtl app``).

``app/`` holds page layout only; every decision is made by medtl's public API
(:mod:`medtl.io`, :mod:`medtl.inference`, :mod:`medtl.models`, :mod:`medtl.review`).
"""
