"""The Streamlit page's parts (``app.py`` holds only ``main()`` and the sidebar).

* :mod:`.state`: the settings record, model and image access, Streamlit caches.
* :mod:`.views`: one function per view of one model.
* :mod:`.image`: one image on the page; :func:`.image.show_image` lays each view out as one
  row, model A's figure beside model B's.
* :mod:`.panels`: model cards, dataset token statistics, the batch overview, downloads.

Every number comes from :mod:`vt_explorer.explore` (one analysis per image and model) and
every picture from :mod:`vt_explorer.viz`; this package only chooses what to draw where.
"""
