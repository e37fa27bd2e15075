"""The file names vssl treats as videos: containers FFmpeg reads that datasets' videos come in.

Torch-free, so the annotation adapters (``vssl data summary``) can use it. A record whose file is
missing under its own name is looked for with each of these extensions, ``.mp4`` first (the
extension ``vssl data prepare`` writes).
"""

VIDEO_EXTENSIONS = (".mp4", ".avi", ".webm", ".mkv", ".mov", ".mpg", ".mpeg", ".ts", ".m4v", ".flv", ".3gp",
                    ".wmv", ".m2ts", ".mts", ".vob", ".ogv", ".asf", ".divx", ".mxf")
