import cProfile, sys, signal
sys.argv = ["kachery-resource", "share", "--config", "/tmp/prof/kachery-resource.yaml"]
from kachery_resource.cli import main
cProfile.run("main()", "/tmp/prof/d.prof")
