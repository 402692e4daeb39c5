"""placeholder"""
NAME = "inspect"
def add_parser(sub, recipe_arg): sub.add_parser(NAME)
def run(args): return 0
