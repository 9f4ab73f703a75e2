from cli_pkg.report import report

if __name__ == "__main__":
    report(globals())
