package progtest_test

import (
	"os"
	"os/exec"
	"testing"

	"github.com/tollgate-dev/tollgate/internal/progtest"
)

func TestBuildOnceThenRemove(t *testing.T) {
	b := &progtest.Build{Package: "./testdata/hello", Env: []string{"CGO_ENABLED=0"}}
	defer b.Remove()
	path := b.Path(t)
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if again := b.Path(t); again != path {
		t.Fatalf("second Path %s, want the first build's %s", again, path)
	}
	if after, err := os.Stat(path); err != nil || !after.ModTime().Equal(info.ModTime()) {
		t.Fatalf("the second Path rebuilt the program (%v)", err)
	}
	out, err := exec.Command(path, "a", "b").Output()
	if err != nil || string(out) != "hello [a b]\n" {
		t.Fatalf("the built program printed %q (%v)", out, err)
	}
	b.Remove()
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Fatalf("after Remove: %v, want the program gone", err)
	}
}

func TestNeedFindsTheGoCommand(t *testing.T) {
	if got := progtest.Need(t, "go", "golang-go"); got != progtest.Go() {
		t.Fatalf("Need(go) = %s, Go() = %s", got, progtest.Go())
	}
}
