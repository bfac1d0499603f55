"""The lobby web page: static HTML, JavaScript and CSS that PAM serves beside its API (``/lobby``)."""
