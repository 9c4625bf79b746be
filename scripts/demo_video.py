"""``make demo-video``: synthetic videos -> extractors -> training -> answers (demos/video.py)."""
from demos.video import main

if __name__ == "__main__":
    raise SystemExit(main())
