// Package deploy holds the scripts that set up machines for Skiff:
// install-deps.sh (a development machine), install.sh and uninstall.sh
// (Skiff as a systemd service) and multinode.sh (a demo cluster). Its
// tests run install.sh and uninstall.sh against scratch roots.
package deploy
