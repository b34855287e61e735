"""``scrd serve``: a trained model behind HTTP (REST + a page), with micro-batching across clients and a
bounded queue. The web packages are optional (``pip install 'scrd[serve]'``) and imported only by
:mod:`.app` and :mod:`.run`; see docs/deploy.md."""
