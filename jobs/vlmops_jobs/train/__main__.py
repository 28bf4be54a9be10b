from . import JOB

if __name__ == "__main__":
    JOB.main()
